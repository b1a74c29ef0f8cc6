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
        "harness/valid-oos-pca.json"]
COLUMNS = ["r2_mean_all", "r2_mean_top100", "pearson_delta", "edistance_ratio", "mmd_ratio", "std_ratio_top100"]
ORDER = ["auto", "vae+latent-arithmetic", "vae+cgan", "pca+latent-arithmetic", "mean-shift", "control", "noise-ceiling"]


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


if __name__ == "__main__":
    print(headline())
