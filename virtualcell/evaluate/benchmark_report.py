"""The ``results.json`` of a benchmark run: its header (what was run, on what) and its completion."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..metrics.ceiling import NOISE_CEILING
from ..metrics.distribution import MAX_CELLS
from . import report as reporting

__all__ = ["FORMAT_VERSION", "SUMMARY_METRICS", "new_report", "complete_report"]

FORMAT_VERSION = 2
SUMMARY_METRICS = ("r2_mean_top100", "pearson_delta", "edistance_ratio", "std_ratio_top100")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def new_report(*, protocol: str, dataset: dict[str, Any], n_cells: int, genes: Sequence[str], preprocess: Any,
               recipe: dict[str, Any], split: dict[str, Any], method: Any, labels: Sequence[str],
               contexts: Sequence[str], n_pcs: int, n_samples: int, seed: int, n_top: int, device: str,
               command: str | None) -> dict[str, Any]:
    """The report of a run that starts now: ``labels`` = the method's then the baselines' (status ``running``)."""
    return {
        "format_version": FORMAT_VERSION, "protocol": protocol, "status": "running",
        "dataset": {**dataset, "n_cells": n_cells, "n_genes": len(genes),
                    "preprocess": preprocess if preprocess is None or isinstance(preprocess, str) else "custom",
                    "preprocessing": {k: v for k, v in recipe.items() if k != "genes"}},
        "split": split,
        "method": {"label": method.label, "components": method.description},
        "baselines": list(labels[1:]), "noise_ceiling": NOISE_CEILING,
        "metrics": {"version": 2, "n_pcs": n_pcs, "pca": "randomised SVD, seeded, fitted on the cells outside the "
                    "held-out unit (Task.reference)", "max_cells_pairwise": MAX_CELLS, "n_samples": n_samples},
        "seed": seed, "n_top": n_top, "device": device,
        "contexts": list(contexts), "results": {label: {} for label in [*labels, NOISE_CEILING]},
        "means": {}, "medians": {}, "degs": {}, "machine": reporting.machine_info(), "packages": reporting.package_versions(),
        "source": reporting.source_revision(),
        "command": command, "started": _now(),
    }


def complete_report(report: dict[str, Any], out_dir: Path | None, plots: bool) -> dict[str, Any]:
    """Mark ``report`` complete; with ``out_dir`` write its summary plots (``plots``) and files; the clean report."""
    from .outputs import write_reports

    report["status"] = "complete"
    report["finished"] = _now()
    if out_dir is not None:
        if plots:
            from . import plots as plotting

            for metric in SUMMARY_METRICS:
                key = metric.replace("top100", f"top{report['n_top']}")
                reporting.atomic_write(out_dir / "plots" / f"summary_{key}.png",
                                       lambda tmp: plotting.metrics_bar(report["results"], key, path=tmp))
        write_reports(out_dir, report)
    return reporting.json_clean(report)
