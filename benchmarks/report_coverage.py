"""RESULTS.md section: conformal intervals from inner folds (issue 22 item 4), from benchmarks/results/coverage/*.json.

    python benchmarks/report_coverage.py          # prints the markdown

Each JSON is the ``results.json`` of ``virtualcell benchmark ... --conformal`` (benchmarks/run_coverage.sh);
every table is headed by the command recorded in it. Nothing here is typed by hand.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from markdown import markdown_table  # noqa: E402

FOLDER = Path(__file__).resolve().parent / "results" / "coverage"
LEVELS = ("80", "90", "95")
#: calibrated cell quantiles (per-gene 10% / 90% of the cells; runs made before them show "-")
QUANTILES = ("10", "90")
#: the issue's goal: coverage90 within this band on >= 80% of held-out units
BAND = (0.85, 0.95)

INTRO = """## Conformal intervals of the predicted mean (issue 22 item 4)

Every method of a run (the named one and the baselines) gets split-conformal intervals of its
predicted per-gene mean, calibrated on the held-out unit's *training* cells only: inner folds (leave
one training context out for OOS, one training replicate out for PERT), normalised scores
`|mean(S)_g - mean(P)_g| / sigma_g` pooled over each inner unit's top-100 DEGs, the per-unit
finite-sample quantile, then the finite-sample median over units (docs/uncertainty.md; all a priori).
`conformal_coverage90` is the fraction of the held-out unit's top-100 DEGs whose real mean lies
inside the 90% interval, the protocol's `coverage90`. Goal: within 0.85-0.95 on >= 80% of units.
`pooled` is the alternative rule (one quantile of all inner scores), reported for comparison only.
`q10` / `q90`: the same construction for each gene's 10% / 90% quantile over cells (the real cells'
quantile inside the interval around the predicted cells'), scored on the same top-100 DEGs.
"""


def _finite(values) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def _median(values) -> str:
    values = _finite(values)
    return f"{statistics.median(values):.3f}" if values else "-"


def _in_band(values) -> str:
    values = _finite(values)
    inside = sum(BAND[0] <= v <= BAND[1] for v in values)
    return f"{inside}/{len(values)}" if values else "-"


def _summary(report: dict) -> list[list[str]]:
    rows = []
    for label, per_unit in report["results"].items():
        units = [row for row in per_unit.values() if "conformal_coverage90" in row]
        if not units:
            continue
        cov = {lv: [u.get(f"conformal_coverage{lv}") for u in units] for lv in LEVELS}
        rows.append([label, _in_band(cov["90"]), *(_median(cov[lv]) for lv in LEVELS),
                     _median(u.get("conformal_width90") for u in units),
                     _median(u.get("conformal_coverage90_all") for u in units),
                     _in_band(u.get("conformal_pooled_coverage90") for u in units),
                     _median(u.get("coverage90") for u in units),
                     *(_median(u.get(f"conformal_q{p}_coverage90") for u in units) for p in QUANTILES),
                     "/".join(sorted({str(u["conformal_units"]) for u in units if "conformal_units" in u})) or "-",
                     _median(u.get("seconds_conformal") for u in units)])
    return rows


def _per_unit(report: dict) -> tuple[list[str], list[list[str]]]:
    labels = [label for label, per in report["results"].items()
              if any("conformal_coverage90" in row for row in per.values())]
    rows = []
    for unit in report["contexts"]:
        cells = [" / ".join(_cell(report["results"][lb].get(unit, {}).get(f"conformal_coverage{lv}")) for lv in LEVELS)
                 for lb in labels]
        rows.append([unit, *cells])
    return ["unit (coverage " + " / ".join(LEVELS) + ")", *labels], rows


def _cell(value) -> str:
    return f"{value:.2f}" if _finite([value]) else "-"


def render() -> str:
    parts = [INTRO]
    runs = sorted(FOLDER.glob("*.json"))
    if not runs:
        return INTRO + "\nNo run yet: `benchmarks/run_coverage.sh` writes them.\n"
    header = ["method", "cov90 in band", "median cov80", "median cov90", "median cov95", "median width90",
              "median cov90 (all genes)", "pooled: cov90 in band", "sampled coverage90",
              *(f"q{p}: median cov90" for p in QUANTILES), "inner units K",
              "s calibration"]
    for path in runs:
        report = json.loads(path.read_text())
        parts.append(f"### {path.stem}\n\n`{report.get('command') or 'command not recorded'}`\n")
        parts.append(markdown_table(header, _summary(report)))
        columns, rows = _per_unit(report)
        parts.append("\n" + markdown_table(columns, rows) + "\n")
    return "\n".join(parts)


if __name__ == "__main__":
    print(render())
