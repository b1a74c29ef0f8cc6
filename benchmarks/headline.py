"""Print the README's headline table: Kang scGen set, unseen cell type (OOS), means over the 7 cell types.

    python benchmarks/headline.py

Reads only the runs' JSON in ``benchmarks/results/`` (the harness runs and the ``auto`` selection run);
a run that has not been made is left out. Each method appears once, from the first run that has it.
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
RUNS = ["selection/valid-oos-auto.json", "harness/valid-oos-vae.json", "harness/valid-oos-cgan.json",
        "harness/valid-oos-diffusion.json", "harness/valid-oos-pca.json"]
COLUMNS = ["r2_mean_all", "r2_mean_top100", "pearson_delta", "edistance_ratio", "mmd_ratio", "std_ratio_top100"]
ORDER = ["auto", "vae+latent-arithmetic", "vae+cgan", "vae+diffusion", "pca+latent-arithmetic", "mean-shift", "control",
         "noise-ceiling"]


def headline() -> str:
    """The markdown table [method x COLUMNS] of mean metrics over held-out cell types."""
    rows: dict[str, dict] = {}
    for run in RUNS:
        path = RESULTS / run
        if path.exists():
            for method, means in json.loads(path.read_text())["means"].items():
                rows.setdefault(method, means)
    names = sorted(rows, key=lambda m: ORDER.index(m) if m in ORDER else len(ORDER))
    lines = ["| method | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name in names:
        cells = [f"{rows[name][c]:.3f}" if isinstance(rows[name].get(c), (int, float)) else "–" for c in COLUMNS]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _per_context(method: str, metric: str) -> list[float]:
    """The per-context values of ``metric`` for ``method`` from the first run that has the method."""
    for run in RUNS:
        path = RESULTS / run
        if path.exists():
            results = json.loads(path.read_text())["results"]
            if method in results:
                return [v[metric] for v in results[method].values() if isinstance(v.get(metric), (int, float))]
    return []


def _mean_of(method: str, metric: str) -> str:
    """The mean over contexts, to 2 decimals."""
    values = _per_context(method, metric)
    return f"{sum(values) / len(values):.2f}" if values else "–"


def notes() -> str:
    """The sentences under the table, every number read from the same runs."""
    lines = []
    spread = _per_context("auto", "std_ratio_top100")
    if spread:
        inside = sum(0.8 <= v <= 1.25 for v in spread)
        lines.append(f"`auto`'s `std_ratio_top100` per cell type: {min(spread):.2f}-{max(spread):.2f}, within "
                     f"0.8-1.25 on {inside} of {len(spread)} (two halves of the truth: "
                     f"{_mean_of('noise-ceiling', 'std_ratio_top100')}).")
    ablation = RESULTS / "selection/valid-oos-auto-nospread.json"
    if ablation.exists():
        means = json.loads(ablation.read_text())["means"]["auto"]
        lines.append(f"The same `auto` run without the spread step (`--manipulator-option spread=false`): "
                     f"edistance_ratio {means['edistance_ratio']:.3f}, mmd_ratio {means['mmd_ratio']:.3f}, "
                     f"std_ratio_top100 {means['std_ratio_top100']:.3f}, pearson_delta {means['pearson_delta']:.3f}.")
    sources = {"vae+cgan": "the CGAN is deterministic, so its intervals are the pipeline's random effect of a cell "
                           "type whose response it has not seen", "vae+diffusion": "the diffusion model's own samples "
                           "plus that random effect"}
    for method, source in sources.items():
        coverage = _per_context(method, "coverage90")
        if coverage:
            inside = sum(0.8 <= v <= 0.97 for v in coverage)
            lines.append(f"`{method}` (`--n-samples 20`; {source}): its 90% intervals cover the real mean of "
                         f"{min(coverage):.2f}-{max(coverage):.2f} of the top DEGs per cell type, within 0.8-0.97 "
                         f"on {inside} of {len(coverage)}.")
    return "\n".join(lines)


if __name__ == "__main__":
    print(headline())
    print()
    print(notes())
