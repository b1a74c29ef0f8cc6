"""What a benchmark run writes: predicted cells (h5ad), scGen-style plots, results.json and results.md."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from . import report as reporting

__all__ = ["safe_name", "write_prediction", "write_outputs", "write_reports", "clear_outputs"]


def safe_name(name: str) -> str:
    """A file-name-safe version of a label (``gene-network (knn)`` -> ``gene-network_knn``)."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or "unit"


def clear_outputs(out_dir: Path) -> None:
    """Create ``predictions/`` and ``plots/`` and remove the files a previous run left there."""
    for folder, pattern in (("predictions", "*.h5ad"), ("plots", "*.png")):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
        for stale in (out_dir / folder).glob(pattern):
            stale.unlink()


def write_prediction(path: Path, pred: np.ndarray, obs: pd.DataFrame, genes: list[str], info: dict[str, Any]) -> None:
    """The predicted cells [n, genes] (log-normalised), obs as the pipeline returned it (condition = target)."""
    out = ad.AnnData(X=pred.astype(np.float32), obs=obs.copy(), var=pd.DataFrame(index=pd.Index(genes, dtype=str)))
    out.uns["benchmark"] = {k: v for k, v in reporting.json_clean(info).items() if v is not None}
    reporting.write_h5ad(out, path)


def write_outputs(out_dir: Path, task, label: str, pred: np.ndarray, obs: pd.DataFrame, stim: np.ndarray,
                   genes: list[str], degs: list[str], protocol: str, seed: int, plots: bool) -> None:
    """The method's predicted cells (h5ad) and, with ``plots``, its scGen-style mean scatter."""
    name = safe_name(task.name)
    write_prediction(out_dir / "predictions" / f"{name}.h5ad", pred, obs, genes,
                      {"method": label, "unit": task.name, "target": task.target, "protocol": protocol, "seed": seed})
    if plots:
        from . import plots as plotting

        reporting.atomic_write(out_dir / "plots" / f"{name}.png", lambda tmp: plotting.mean_scatter(
            pred, stim, genes, degs=degs, title=f"{label}: {task.name} ({protocol.upper()})", path=tmp))


def write_reports(out_dir: Path, report: dict[str, Any]) -> None:
    reporting.write_json(out_dir / "results.json", report)
    reporting.write_text(out_dir / "results.md", reporting.markdown_report(report))
