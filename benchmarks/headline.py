"""Print the README's headline table: Kang scGen set, unseen cell type (OOS), means over the 7 cell types.

    python benchmarks/headline.py

Reads only the runs' JSON in ``benchmarks/results/``; a run that has not been made is left out.

- The ``auto`` row is select's current default rule, from the selection-fidelity run
  ``fidelity/kang-valid.json`` (``python benchmarks/bench_fidelity.py kang-valid``): per held-out cell
  type, ``virtualcell.select`` with its defaults (full-budget inner CV on the other 6 types, the
  one-standard-error rule ``one-se``, stacked ensembles, the cross-fitted spread step) chose an entry from
  its inner table only (``units[type]["chosen"]["one-se"]``); the row is the mean over the cell types of
  that entry's held-out metrics (``units[type]["heldout"][entry]``, scored by the harness as every other
  row). A column that some cell type lacks is shown as ``–``.
- Every other row comes from the harness runs ``harness/valid-oos-*.json`` (each method once, from the
  first run in ``RUNS`` that has it).
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
FIDELITY = "fidelity/kang-valid.json"
RULE = "one-se"
RUNS = ["harness/valid-oos-vae.json", "harness/valid-oos-cgan.json",
        "harness/valid-oos-diffusion.json", "harness/valid-oos-pca.json"]
COLUMNS = ["r2_mean_all", "r2_mean_top100", "pearson_delta", "edistance_ratio", "mmd_ratio", "std_ratio_top100"]
ORDER = ["auto", "vae+latent-arithmetic", "vae+cgan", "vae+diffusion", "pca+latent-arithmetic", "mean-shift", "control",
         "noise-ceiling"]


def _units() -> dict[str, dict]:
    """The fidelity run's records per held-out cell type ({} when it has not been made)."""
    path = RESULTS / FIDELITY
    return json.loads(path.read_text())["units"] if path.exists() else {}


def _chosen() -> dict[str, tuple[str, dict]]:
    """Per held-out cell type of the fidelity run: (the entry the ``one-se`` rule chose, its held-out metrics)."""
    out = {}
    for unit, record in _units().items():
        entry = record.get("chosen", {}).get(RULE, record.get("winner"))
        out[unit] = (entry, record.get("heldout", {}).get(entry, {}))
    return out


def _fidelity_means(entries: dict[str, str], columns: list[str]) -> dict[str, float]:
    """Mean over the fidelity run's cell types of ``heldout[entries[type]][column]``; a column that some cell
    type lacks is left out (so a table shows ``–``)."""
    units = _units()
    rows = [units[u].get("heldout", {}).get(entry, {}) for u, entry in entries.items()]
    return {c: sum(r[c] for r in rows) / len(rows) for c in columns
            if rows and all(isinstance(r.get(c), (int, float)) for r in rows)}


def _auto_means() -> dict[str, float]:
    """The ``auto`` row: the mean over cell types of the chosen entry's held-out metrics."""
    return _fidelity_means({u: entry for u, (entry, _) in _chosen().items()}, COLUMNS)


def headline() -> str:
    """The markdown table [method x COLUMNS] of mean metrics over held-out cell types."""
    rows: dict[str, dict] = {"auto": _auto_means()} if _chosen() else {}
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
    """The per-context values of ``metric`` for ``method`` from the first run that has the method (``auto``:
    its chosen entry's, from the fidelity run)."""
    if method == "auto":
        return [m[metric] for _, m in _chosen().values() if isinstance(m.get(metric), (int, float))]
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


def _auto_notes() -> list[str]:
    """What ``auto`` chose, how the fidelity run's own mean-shift compares with the harness row, its spread,
    and the chosen entries without their spread step (same run)."""
    chosen = _chosen()
    if not chosen:
        return []
    entries = [entry for entry, _ in chosen.values()]
    counts = ", ".join(f"`{e}` on {entries.count(e)} of {len(entries)}" for e in dict.fromkeys(entries))
    lines = [f"`auto` = `virtualcell.select` with its defaults (full-budget inner CV, the `{RULE}` rule), fitted on "
             f"the other cell types and scored on the held-out one ({FIDELITY}); it chose {counts}."]
    distribution = ["edistance_ratio", "mmd_ratio"]
    own = _fidelity_means({u: "mean-shift" for u in chosen}, distribution)
    harness = [_per_context("mean-shift", c) for c in distribution]
    if len(own) == 2 and all(harness):
        lines.append(f"The same run scores `mean-shift` at edistance_ratio {own['edistance_ratio']:.3f}, mmd_ratio "
                     f"{own['mmd_ratio']:.3f} (its row above, from the harness runs: "
                     + ", ".join(f"{sum(v) / len(v):.3f}" for v in harness)
                     + "): compare `auto` with the other rows to about that.")
    spread = _per_context("auto", "std_ratio_top100")
    if spread:
        inside = sum(0.8 <= v <= 1.25 for v in spread)
        lines.append(f"`auto`'s `std_ratio_top100` per cell type: {min(spread):.2f}-{max(spread):.2f}, within "
                     f"0.8-1.25 on {inside} of {len(spread)} (two halves of the truth: "
                     f"{_mean_of('noise-ceiling', 'std_ratio_top100')}).")
    shown = ["edistance_ratio", "mmd_ratio", "std_ratio_top100", "pearson_delta"]
    base = _fidelity_means({u: entry.removesuffix("+spread") for u, (entry, _) in chosen.items()}, shown)
    if any(e.endswith("+spread") for e in entries) and len(base) == len(shown):
        lines.append("The same chosen entries without the spread step (held out in the same run): "
                     + ", ".join(f"{c} {base[c]:.3f}" for c in shown) + ".")
    return lines


def notes() -> str:
    """The sentences under the table, every number read from the same runs."""
    lines = _auto_notes()
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
