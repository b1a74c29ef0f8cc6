"""PERT-unseen's report: discrimination over the common targets, means, ``results.md`` and the plots."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..metrics.discrimination import discrimination
from . import report as reporting

__all__ = ["TABLE_METRICS", "PLOT_METRICS", "target_means", "finish_report", "markdown_table"]

TABLE_METRICS = ("pearson_delta", "discrimination", "r2_mean_top100", "pearson_delta_top100", "de_overlap_top100",
                 "edistance_ratio", "mmd_ratio", "std_ratio_top100")
#: one bar chart per metric (``plots/summary_<metric>.png``): targets on the x axis, one bar per method
PLOT_METRICS = ("pearson_delta", "discrimination", "edistance_ratio")


def target_means(per_target: Mapping[str, Mapping[str, Any]], targets: Sequence[str]) -> dict[str, Any]:
    """Each numeric metric's mean over ``targets`` (NaN and None left out), with ``n_targets``."""
    rows = [per_target[t] for t in targets if t in per_target]
    keys = sorted({k for r in rows for k, v in r.items() if isinstance(v, (int, float)) and not k.startswith("n_")})
    out: dict[str, Any] = {"n_targets": len(rows)}
    for key in keys:
        values = np.array([r[key] for r in rows if r.get(key) is not None], dtype=float)
        values = values[np.isfinite(values)]
        out[key] = float(values.mean()) if values.size else None
    return out


def finish_report(report: dict[str, Any], bulks: Mapping[str, Mapping[str, np.ndarray]],
                  real_bulks: Mapping[str, np.ndarray], out_dir: Path | None, final: bool,
                  plots: bool = False) -> dict[str, Any]:
    """Discrimination over the targets every method predicted (mean profiles [genes] in ``bulks[label][target]``
    and ``real_bulks[target]``), the means, and the files (with ``final`` and ``plots``: the summary plots)."""
    common = [t for t in report["contexts"] if t in real_bulks and all(t in b for b in bulks.values())]
    report["common_targets"] = common
    if len(common) >= 2:
        for label, per in bulks.items():
            for target, score in discrimination({t: per[t] for t in common}, {t: real_bulks[t] for t in common}).items():
                report["results"][label][target]["discrimination"] = score
    report["means"] = {label: target_means(per, common) for label, per in report["results"].items() if per}
    report["means_all_predicted"] = {label: target_means(per, list(per)) for label, per in report["results"].items() if per}
    if final:
        report["status"] = "complete"
        report["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    report = reporting.json_clean(report)
    if out_dir is not None:
        if final and plots:
            _summary_plots(report, out_dir)
        reporting.write_json(out_dir / "results.json", report)
        reporting.write_text(out_dir / "results.md", markdown_table(report))
    return report


def _summary_plots(report: Mapping[str, Any], out_dir: Path) -> None:
    from . import plots as plotting

    table = {label: per for label, per in report["results"].items() if per}
    for metric in PLOT_METRICS:
        if any(metric in row for per in table.values() for row in per.values()):
            reporting.atomic_write(out_dir / "plots" / f"summary_{metric}.png",
                                   lambda tmp: plotting.metrics_bar(table, metric, path=tmp))


def markdown_table(report: Mapping[str, Any], metrics: Sequence[str] = TABLE_METRICS) -> str:
    """Means over the common targets, then pearson_delta and discrimination per target (markdown)."""
    def fmt(v: Any) -> str:
        return "" if v is None else f"{v:.3f}"

    metrics = [m.replace("top100", f"top{report.get('n_top', 100)}") for m in metrics]
    labels = [label for label in report["results"] if report["means"].get(label)]
    lines = [f"Means over {len(report.get('common_targets', []))} held-out targets predicted by every method "
             f"({', '.join(report.get('common_targets', []))}).", "",
             "| method | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    lines += ["| " + label + " | " + " | ".join(fmt(report["means"][label].get(m)) for m in metrics) + " |" for label in labels]
    lines += ["", "Per target: pearson_delta / discrimination.", "",
              "| target | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for t in report.get("common_targets", []):
        cells = [f"{fmt(report['results'][lab].get(t, {}).get('pearson_delta'))} / "
                 f"{fmt(report['results'][lab].get(t, {}).get('discrimination'))}" for lab in labels]
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    refused = {label: sorted(per) for label, per in report.get("refused", {}).items() if per}
    if refused:
        lines += ["", "Refused (target outside the method's network or unconnected): " +
                  "; ".join(f"{label}: {len(ts)} ({', '.join(ts[:12])})" for label, ts in refused.items())]
    return "\n".join(lines) + "\n"
