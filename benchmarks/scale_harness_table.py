"""RESULTS.md table: ``benchmark`` from disk vs in memory on real data (benchmarks/results/scale/harness_*.json).

Rendered inside the atlas-scale section by ``benchmarks/report_scale.py``; the JSON is written by
``benchmarks/bench_disk_harness.py``. Nothing here is typed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

from markdown import markdown_table

FOLDER = Path(__file__).resolve().parent / "results" / "scale"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1e}" if 0 < value < 1e-3 else f"{value:.4f}"


def _atlas(runs: list[dict]) -> list[str]:
    """The from-disk-only runs on simulated atlases (harness_atlas_*.json): seconds and peak RSS by size."""
    if not runs:
        return []
    runs = sorted(runs, key=lambda r: r["cells"])
    rows = [[f"{r['cells']:,}", r["cell_types"], r["units"], f"{r['seconds']:.0f}", f"{r['peak_rss_mb']:,.0f}",
             f"{r['dense_x_in_memory_mb']:,}", f"`{r['command']}`"] for r in runs]
    growth = runs[-1]["peak_rss_mb"] / runs[0]["peak_rss_mb"] - 1
    return ["", "From disk on simulated atlases (bench_scale.py's counts, 2,000 genes, `log1p` by a streamed copy; one "
            f"cell type per {runs[0]['cells'] // runs[0]['cell_types']:,} cells, so the held-out units keep their size; "
            "pca + latent-arithmetic with the baselines, 2 units held out in turn):", "",
            markdown_table(["cells", "cell types", "units", "seconds", "peak RSS MB", "dense X alone in memory, MB",
                            "command"], rows), "",
            f"Peak RSS from the smallest to the largest atlas: {growth:+.0%}. A unit's real and predicted cells and its "
            "Wilcoxon test are held in memory (in memory and from disk alike), so the peak follows the largest "
            "held-out unit, not the atlas.", ""]


def harness_section() -> str | None:
    """The tables of every harness_*.json, or None when there is none."""
    found = [json.loads(p.read_text()) for p in sorted(FOLDER.glob("harness_*.json"))]
    runs = [r for r in found if "differences" in r]
    atlas = _atlas([r for r in found if r["name"].startswith("atlas_")])
    if not runs:
        return "\n".join(["### Benchmark and select from disk", *atlas]) if atlas else None
    rows = []
    for run in runs:
        for label, diff in run["differences"].items():
            unit = diff["distribution_metric_unit"]
            rows.append([run["name"], label, _fmt(diff["gene_space_max_abs_diff"]),
                         f"{_fmt(diff['distribution_max_abs_diff'])}" + (f" ({unit[0]}, {unit[1]})" if unit else ""),
                         diff["clear_units"]])
    costs = [[run["name"], f"{run['n_cells']:,} x {run['n_genes']:,}", run["units"],
              f"{run['memory']['seconds']:.0f} / {run['memory']['peak_rss_mb']:,.0f}",
              f"{run['disk']['seconds']:.0f} / {run['disk']['peak_rss_mb']:,.0f}"] for run in runs]
    return "\n".join([
        "### Benchmark and select from disk: the same numbers on real data", "",
        "`" + "`, `".join(run["command"] for run in runs) + "` (pca + latent-arithmetic with the baselines, seed 0, "
        "1 thread; each run a fresh process). In memory the file is read and preprocessed whole; from disk "
        "(`--from-disk`) the recipe is written once as a streamed CSR copy, every method is fitted from disk on its "
        "training cells and only each unit's cells are read.", "",
        markdown_table(["data", "cells x genes (after recipe)", "units", "in memory: s / peak RSS MB",
                        "from disk: s / peak RSS MB"], costs), "",
        markdown_table(["data", "method", "largest |Δ| gene-space mean (R², pearson_delta, std ratio)",
                        "largest |Δ| E / MMD ratio, units with E(C,S) > 0.1 (metric, unit)", "such units"], rows), "",
        "The gene-space metrics score the fitted models' predictions; the distribution ratios are computed in a "
        "50-PC space, fitted in memory by a seeded randomised SVD of the cells and from disk by the same SVD computed "
        "from the streamed covariance (virtualcell/metrics/pca_from_covariance.py), and divided by E(C, S): on units "
        "without a clear effect (E(C, S) near 0) any float difference is amplified without bound, so those units are "
        "left out of the comparison (their ratios are in the JSON).", *atlas, ""])
