"""RESULTS.md's overview: every method x every task of issue #11, mean pearson_delta / edistance_ratio per run.

    python benchmarks/report_overview.py          # prints the markdown

Reads only ``benchmarks/results/harness/*.json`` and ``benchmarks/results/selection/*.json`` (the runs of
``benchmarks/run_harness.sh`` and ``benchmarks/run_selection.sh``); a cell without a run prints ``–``.
Each cell: the method's mean ``pearson_delta`` / ``edistance_ratio`` over held-out units, then the
number of units where it beats clamped mean-shift on both.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from comparisons import beats  # noqa: E402
from markdown import markdown_table  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TASKS = ("valid-oos", "valid-ood", "full-oos", "full-ood", "pert")
METHODS = {"pca+latent-arithmetic": "pca", "vae+latent-arithmetic": "vae", "vae+cgan": "cgan",
           "vae+diffusion": "diffusion", "auto": "auto"}


def _run(task: str, stem: str) -> dict | None:
    for folder in ("harness", "selection"):
        path = RESULTS / folder / f"{task}-{stem}.json"
        if path.exists():
            return json.loads(path.read_text())
    return None


def _cell(run: dict | None) -> str:
    if run is None:
        return "–"
    label = run["method"]["label"]
    mine, shift = run["results"][label], run["results"].get("mean-shift", {})
    both = sum(all(beats(scores, shift.get(unit, {}))) for unit, scores in mine.items())
    means = run["means"][label]
    return f"{means['pearson_delta']:.3f} / {means['edistance_ratio']:.3f} ({both}/{len(mine)})"


def table() -> str:
    rows = [[f"`{label}`", *(_cell(_run(task, stem)) for task in TASKS)] for label, stem in METHODS.items()]
    rows.append(["`mean-shift`", *(f"{r['means']['mean-shift']['pearson_delta']:.3f} / "
                                   f"{r['means']['mean-shift']['edistance_ratio']:.3f}" if r else "–"
                                   for r in (_run(task, "pca") for task in TASKS))])
    return markdown_table(["method", *TASKS], rows)


def render() -> str:
    return ("## Overview: every method on every task (issue #11)\n\n"
            "Each cell: mean `pearson_delta` / mean `edistance_ratio` over the held-out units, and in brackets the "
            "units where the method beats clamped mean-shift on both (energy distances compared by E(P, S), since "
            "E(C, S) <= 0 flips the ratio). Runs: `benchmarks/run_harness.sh <task>-<method>` and "
            "`benchmarks/run_selection.sh <task>-auto`; every number comes from the tables below. `auto` cannot run "
            "OOD (the context column it folds over is hidden); `–`: not run (CPU time).\n\n" + table() + "\n")


if __name__ == "__main__":
    print(render())
