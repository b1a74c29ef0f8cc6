"""RESULTS.md section of the hub's concurrent-publish check (issue #12), built only from benchmarks/results/hub/*.json.

    python benchmarks/report_hub.py          # prints the markdown
"""

from __future__ import annotations

import json
from pathlib import Path

FOLDER = Path(__file__).resolve().parent / "results" / "hub"


def render() -> str:
    runs = [json.loads(p.read_text()) for p in sorted(FOLDER.glob("*.json"))]
    if not runs:
        return ""
    out = ["## Hub: concurrent publishes of one version (issue #12)", "",
           "Each round: N threads publish different artifacts as the same name@version at once, then the "
           "version is pulled. Expected: exactly one caller told it won, and the version pulls.", ""]
    for run in runs:
        out += [f"`{run['command']}` (code: {run['label']}, {run['writers']} writers; {run['machine']})", "",
                *([f"({run['note']})", ""] if run.get("note") else []),
                "| hub | rounds | rounds without exactly one winner | rounds leaving a version pull refuses |",
                "|---|---|---|---|"]
        for hub, r in run["results"].items():
            out.append(f"| {hub} | {r['rounds']} | {r['rounds_not_exactly_one_winner']} | {r['rounds_version_pull_refuses']} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(render())
