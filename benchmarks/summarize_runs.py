"""Side-by-side table of several benchmark runs (their results.json), one row per context.

    python benchmarks/summarize_runs.py benchmarks/out/valid-pca benchmarks/out/valid-vae [--metrics r2_mean_all,...]
    python benchmarks/summarize_runs.py benchmarks/out/valid-* --means        # one row per method

Reads the harness's results.json (``virtualcell benchmark``) and ``bench_diffusion.py oos``'s.

Columns: for every method of every run (baselines once), the chosen metrics joined by " / ";
a last row holds the means over contexts. With ``--means``: one row per method (its mean over
contexts), one column per metric. Used for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT = "r2_mean_all,r2_mean_top100,pearson_delta,edistance_ratio"
MEANS_DEFAULT = ("r2_mean_all,r2_mean_top100,pearson_delta,pearson_delta_top100,de_overlap_top100,edistance_ratio,"
                 "r2_var_top100,gene_corr_top100,seconds_train")


def _cell(values: dict, metrics: list[str], digits: int = 3) -> str:
    return " / ".join("–" if values.get(m) is None else f"{values[m]:.{digits}f}" for m in metrics)


def _harness_form(report: dict) -> dict:
    """A ``bench_diffusion.py oos`` report (one method, ``results[context]``) in the harness's layout."""
    if "status" in report:
        return report
    label = report["method"]["label"]
    return {"status": "complete", "protocol": "oos", "contexts": list(report["results"]), "baselines": [],
            "results": {label: report["results"]}, "means": {label: report["means"]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="output folders of `virtualcell benchmark`")
    parser.add_argument("--metrics", default=None, help=f"comma-separated (default {DEFAULT}; with --means every metric)")
    parser.add_argument("--means", action="store_true", help="one row per method: its means over contexts")
    parser.add_argument("--digits", type=int, default=3, help="decimals printed (default 3)")
    args = parser.parse_args()
    metrics = (args.metrics or (MEANS_DEFAULT if args.means else DEFAULT)).split(",")
    columns: dict[str, tuple[dict, dict]] = {}
    contexts: list[str] = []
    for run in args.runs:
        report = _harness_form(json.loads((run / "results.json").read_text()))
        if report["status"] != "complete":
            print(f"<!-- {run}: status {report['status']} -->")
        contexts += [c for c in report["contexts"] if c not in contexts]
        for label, per in report["results"].items():
            name = label if label in report.get("baselines", []) else f"{label} ({report['protocol']})"
            if name in columns and label not in report.get("baselines", []):
                name = f"{label} ({report['protocol']}, {run.name})"       # the same method in two runs
            columns.setdefault(name, (per, report["means"].get(label, {})))
    if args.means:
        print("| method | n | " + " | ".join(metrics) + " |")
        print("|---" * (len(metrics) + 2) + "|")
        for name, (per, means) in columns.items():
            print(f"| {name} | {len(per)} | " + _cell(means, metrics, args.digits).replace(" / ", " | ") + " |")
        return
    unit = "context"
    print(f"| {unit} | " + " | ".join(f"{name}: {' / '.join(metrics)}" for name in columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for context in contexts:
        print(f"| {context} | " + " | ".join(_cell(per.get(context, {}), metrics, args.digits) for per, _ in columns.values()) + " |")
    print("| **mean** | " + " | ".join(_cell(means, metrics, args.digits) for _, means in columns.values()) + " |")


if __name__ == "__main__":
    main()
