"""RESULTS.md section for PERT-unseen, built only from ``benchmarks/results/pert_unseen/*.json``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from markdown import markdown_table  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "pert_unseen"
METRICS = ("pearson_delta", "discrimination", "r2_mean_top100", "pearson_delta_top100", "de_overlap_top100",
           "edistance_ratio", "mmd_ratio", "std_ratio_top100")
BASELINE = "mean-perturbation"


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def _wins(report: dict, label: str, metric: str, higher_is_better: bool) -> tuple[int, int]:
    """Targets where ``label`` beats mean-perturbation on ``metric`` (strictly), and the number compared."""
    targets = report["common_targets"]
    better = 0
    for t in targets:
        a, b = report["results"][label][t].get(metric), report["results"][BASELINE][t].get(metric)
        if a is not None and b is not None and ((a > b) if higher_is_better else (a < b)):
            better += 1
    return better, len(targets)


def _verdict(report: dict, label: str) -> str:
    means, base = report["means"][label], report["means"][BASELINE]
    parts = []
    for metric, higher in (("pearson_delta", True), ("discrimination", False)):
        won, n = _wins(report, label, metric, higher)
        on_mean = (means[metric] > base[metric]) if higher else (means[metric] < base[metric])
        parts.append(f"{metric}: mean {_fmt(means[metric])} vs {_fmt(base[metric])} "
                     f"({'beats' if on_mean else 'does not beat'} it), better on {won} of {n} targets")
    return "; ".join(parts)


def render_run(report: dict, run: str = "") -> str:
    labels = [label for label in report["results"] if report["means"].get(label)]
    methods = [label for label in labels if label not in (BASELINE, "control", "noise-ceiling")]
    dataset = report["dataset"]
    lines = [f"### PERT-unseen: {Path(dataset.get('path') or 'data').name}, leave one target out"
             + (f" (`{run}`)" if run else ""), "",
             f"`{report['command']}`", "",
             f"Machine: {report['machine'].get('cpu', '?')}, {report.get('threads', '?')} torch threads; "
             f"{report.get('seconds_total', 0):.0f} s in all. {dataset['n_cells']} cells x {dataset['n_genes']} genes "
             f"after dropping {report['split']['drop_conditions']}. Held-out targets ({len(report['common_targets'])}, "
             f"those among the measured genes with >= {report['split']['min_cells']} cells): "
             f"{', '.join(report['common_targets'])}. Not in the data's genes, so outside any network built from it "
             f"(they still train every fold): {', '.join(report.get('targets_not_in_data_genes', [])) or 'none'}.", ""]
    if report.get("protocol_note"):
        items = report["protocol_note"].split("\n- ")[1:]
        lines += ["Protocol, fixed before any run (nothing tuned on held-out targets):", ""]
        lines += [f"- {' '.join(item.split())}" for item in items] + [""]
    lines += ["Means over the held-out targets (discrimination: 0 best, 0.5 chance; ratios: below 1 beats control):", "",
              markdown_table(["method", *METRICS], [[label, *(_fmt(report["means"][label].get(m)) for m in METRICS)]
                                            for label in labels]), ""]
    lines += ["Per target, pearson_delta / discrimination:", "",
              markdown_table(["target", *labels], [[t, *(f"{_fmt(report['results'][lab][t].get('pearson_delta'))} / "
                                                 f"{_fmt(report['results'][lab][t].get('discrimination'))}"
                                                 for lab in labels)] for t in report["common_targets"]]), ""]
    lines += ["Against the goal (beat mean-perturbation on the mean and on most targets):", ""]
    lines += [f"- {label}: {_verdict(report, label)}" for label in methods]
    sources = [label for label in methods if label.startswith("gene-network (")]
    if len(sources) > 1:
        values = {label: report["means"][label]["pearson_delta"] for label in sources}
        lines += ["", "Effect of the network's source on gene-network (mean pearson_delta): " +
                  ", ".join(f"{k} {_fmt(v)}" for k, v in values.items()) +
                  f"; spread {_fmt(max(values.values()) - min(values.values()))} against a gain over "
                  f"mean-perturbation of {_fmt(min(values.values()) - report['means'][BASELINE]['pearson_delta'])} "
                  "or more."]
    scales = {label: sorted({(round(report["results"][label][t]["scale_chosen"], 2),
                              int(report["results"][label][t].get("own_effect_chosen", 1)))
                             for t in report["common_targets"] if "scale_chosen" in report["results"][label][t]})
              for label in methods}
    scales = {k: v for k, v in scales.items() if v}
    if scales:
        lines += ["", "(network scale, own-gene effect on/off) chosen per fold by the inner leave-one-target-out "
                  "(training targets only): " +
                  "; ".join(f"{k}: {v}" for k, v in scales.items())]
    networks = {label: report["results"][label][report["common_targets"][0]].get("network") for label in methods}
    lines += ["", "Networks of the first fold: " + "; ".join(f"{k}: {v}" for k, v in networks.items() if v)]
    return "\n".join(lines) + "\n"


def render() -> str:
    """The PERT-unseen section: one block per saved run (newest file name last)."""
    runs = sorted(RESULTS.glob("*.json"))
    if not runs:
        return "## Unseen genetic perturbations (PERT-unseen)\n\nNo runs saved yet (benchmarks/bench_pert_unseen.py).\n"
    blocks = [render_run(json.loads(path.read_text(encoding="utf-8")), path.stem) +
              ("\nThis ablation was run after the main run's numbers had been seen: it explains where the gain "
               "comes from and selects nothing (the shipped default stays `scale=\"cv\"`).\n"
               if "ablation" in path.stem else "") for path in runs]
    return "## Unseen genetic perturbations (PERT-unseen)\n\n" + "\n".join(blocks)


if __name__ == "__main__":
    print(render())
