"""RESULTS.md section "Selection fidelity and regret": does ``select``'s inner ranking carry over to held-out units?

Built only from ``benchmarks/results/fidelity/*.json`` (``benchmarks/bench_fidelity.py``). ``render()``
returns markdown; no number is typed here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from markdown import markdown_table  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "fidelity"
RULES = ("one-se", "min", "rank")
CANDIDATES = ("mean-shift", "pca+latent-arithmetic", "vae+latent-arithmetic")


def heldout_loss(scores: dict) -> float:
    """The selection score's loss (virtualcell.selection.ranking) computed on one held-out unit's scores."""
    from virtualcell.selection.ranking import metric_names, unit_losses

    return float(unit_losses({"e": {"u": scores}}, metric_names(100)).iloc[0, 0])


def energy(scores: dict) -> float:
    """E(P, S) = edistance_ratio x E(C, S) (the numerator: comparable even where E(C, S) <= 0)."""
    return float(scores["edistance_ratio"]) * float(scores["edistance_control"])


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    value = spearmanr(a, b).statistic
    return float(value) if np.isfinite(value) else float("nan")


def summarise(run: dict) -> dict:
    """Per-entry inner vs held-out means, rank correlations, regret per rule and wins over mean-shift."""
    units = run["units"]
    names = list(units)
    entries = list(next(iter(units.values()))["order"])
    inner = {e: np.array([units[u]["inner"][e]["score"] for u in names]) for e in entries}
    held = {e: np.array([heldout_loss(units[u]["heldout"][e]) for u in names]) for e in entries}
    pd_ = {e: np.array([units[u]["heldout"][e]["pearson_delta"] for u in names]) for e in entries}
    ep = {e: np.array([energy(units[u]["heldout"][e]) for u in names]) for e in entries}
    ratio = {e: np.array([units[u]["heldout"][e]["edistance_ratio"] if units[u]["heldout"][e]["edistance_control"] > 0
                          else np.nan for u in names]) for e in entries}
    cands = [e for e in entries if e in run.get("candidates", CANDIDATES)]
    # PERT (issue 22's goal): wins over mean-shift are counted over the targets with E(C, S) > 0 only
    counted = np.array([run.get("kind") != "pert" or units[u]["heldout"]["mean-shift"]["edistance_control"] > 0
                        for u in names])
    per_unit_rho = [spearman([inner[e][i] for e in entries], [held[e][i] for e in entries]) for i in range(len(names))]
    best_pd = max(cands, key=lambda e: pd_[e].mean())
    best_e = min(cands, key=lambda e: np.nanmean(ratio[e]))
    # E(P, S) relative to the unit's best: only where E(C, S) > 0 (elsewhere the energy distance is noise, and a
    # negative unbiased estimate makes the ratio meaningless)
    positive = np.array([units[u]["heldout"]["mean-shift"]["edistance_control"] > 0 for u in names])
    rules = {}
    for rule in RULES:
        picked = [units[u]["chosen"][rule] for u in names]
        a_pd = np.array([pd_[p][i] for i, p in enumerate(picked)])
        a_ep = np.array([ep[p][i] for i, p in enumerate(picked)])
        a_ratio = np.array([ratio[p][i] for i, p in enumerate(picked)])
        oracle_pd = np.max([pd_[c] for c in cands], axis=0)
        oracle_ep = np.min([ep[c] for c in cands], axis=0)
        ms_pd, ms_ep = pd_["mean-shift"], ep["mean-shift"]
        rules[rule] = {
            "picked": picked, "pd": float(a_pd.mean()), "ratio": float(np.nanmean(a_ratio)),
            "regret_pd": float(pd_[best_pd].mean() - a_pd.mean()),
            "regret_e": float(np.nanmean(a_ratio) / np.nanmean(ratio[best_e]) - 1),
            "unit_regret_pd": (oracle_pd - a_pd).tolist(), "unit_regret_e": np.where(
                (positive & (oracle_ep > 0)), a_ep / np.where(oracle_ep > 0, oracle_ep, 1) - 1, np.nan).tolist(),
            "wins": int(((a_pd > ms_pd) & (a_ep < ms_ep))[counted].sum()), "counted": int(counted.sum())}
    return {"names": names, "entries": entries, "inner": inner, "held": held, "pd": pd_, "ratio": ratio,
            "rho_units": per_unit_rho, "rho_means": spearman([inner[e].mean() for e in entries],
                                                             [held[e].mean() for e in entries]),
            "rho_candidates": spearman([inner[e].mean() for e in cands], [held[e].mean() for e in cands]),
            "best_pd": best_pd, "best_e": best_e, "rules": rules, "stats": run.get("stats", {})}


def _percent(value: float) -> str:
    """A relative excess as ``+12.3%``; ``–`` where undefined (E(C, S) <= 0)."""
    return f"{100 * value:+.1f}%" if np.isfinite(value) else "– (E(C,S) ≤ 0)"


def _choices(picked: list[str]) -> str:
    """The rule's choices per unit; counted (``entry ×k``) when a choice repeats (PERT: one choice for all)."""
    if len(set(picked)) == len(picked):
        return ", ".join(picked)
    return ", ".join(f"{e} ×{picked.count(e)}" for e in dict.fromkeys(picked))


def _dataset(name: str, run: dict) -> str:
    s = summarise(run)
    n = len(s["names"])
    chosen = s["rules"]["one-se"]["picked"]
    rows = [[e, float(s["inner"][e].mean()), float(s["inner"][e].std()), float(s["held"][e].mean()),
             float(s["pd"][e].mean()), float(np.nanmean(s["ratio"][e])), chosen.count(e)] for e in s["entries"]]
    entry_table = markdown_table(["entry", "inner loss (mean over outer units)", "sd", "held-out loss",
                                  "held-out pearson_delta", "held-out edistance_ratio", "chosen (one-se)"], rows)
    rule_rows = [[rule, r["pd"], r["regret_pd"], r["ratio"], f"{100 * r['regret_e']:+.1f}%",
                  f"{r['wins']}/{r['counted']}", _choices(r["picked"])] for rule, r in s["rules"].items()]
    rule_table = markdown_table(["rule", "pearson_delta", "regret pΔ (best single − rule)", "edistance_ratio",
                                 "regret E (rule / best single − 1)", "beats mean-shift on both", "choices per unit"],
                                rule_rows)
    r = s["rules"]["one-se"]
    unit_rows = [[u, r["picked"][i], s["pd"][r["picked"][i]][i], r["unit_regret_pd"][i],
                  _percent(r["unit_regret_e"][i]), s["rho_units"][i]] for i, u in enumerate(s["names"])]
    unit_table = markdown_table(["held-out unit", "select chose", "pearson_delta", "regret pΔ vs the unit's best candidate",
                                 "E(P,S) vs the unit's best candidate", "Spearman inner vs held-out (entries)"],
                                unit_rows)
    fits = s["stats"].get("fit_seconds", {})
    kind = "targets" if run.get("kind") == "pert" else "held-out units"
    counted = (f" Wins over mean-shift are counted over the {s['rules']['one-se']['counted']} targets with "
               "E(C,S) > 0." if run.get("kind") == "pert" else "")
    return (f"### {name} ({n} {kind})\n\nProtocol: {run.get('protocol', '–')}.{counted}\n\nBest single candidate on the mean: `{s['best_pd']}` (pearson_delta), "
            f"`{s['best_e']}` (edistance_ratio). Spearman of inner vs held-out mean loss over all entries: "
            f"{s['rho_means']:.2f} (over the 3 candidates: {s['rho_candidates']:.2f}); per unit, mean "
            f"{np.nanmean(s['rho_units']):.2f}.\n\n{entry_table}\n\n{rule_table}\n\nPer unit (rule one-se, "
            f"select's default):\n\n{unit_table}\n\nDistinct fits: {s['stats'].get('fits', '–')} (cache hits "
            f"{s['stats'].get('hits', '–')}); fit seconds per candidate: "
            + ", ".join(f"{k} {v:.0f}" for k, v in fits.items()) + ".\n")


def render() -> str:
    head = ("## Selection fidelity and regret\n\n"
            "`benchmarks/bench_fidelity.py` (`.venv/bin/python benchmarks/bench_fidelity.py`): "
            "for each outer training set (OOS: one per held-out context; PERT: the training replicates, one for "
            "all held-out targets), `select` runs on the training cells with its defaults (full budget: every "
            "inner fit is the final fit; candidates mean-shift, pca+latent-arithmetic, vae+latent-arithmetic at "
            "40 epochs unless a dataset's protocol line says otherwise; n_jobs=1, one CPU thread), then every entry "
            "of its table is fitted on the same cells and scored on each held-out unit with the harness's "
            "scoring. Loss = the selection score "
            "(mean of 1 − pearson_delta, edistance_ratio where E(C,S) > 0, 1 − R² top-100 DEGs). The rules are "
            "applied to the inner table only; `one-se` is select's default, `rank` the mean rank of earlier "
            "versions. Regret: the rule's mean minus the best single candidate's (pearson_delta; edistance_ratio "
            "as a relative excess); per unit against that unit's best candidate (an oracle). Wins: units where the "
            "choice beats clamped mean-shift on both pearson_delta and E(P,S) (PERT: targets with E(C,S) > 0).\n")
    runs = sorted(p for p in RESULTS.glob("*.json") if p.stem != "cost") if RESULTS.is_dir() else []
    if not runs:
        return head + "\nNo runs yet: run the command above.\n"
    loaded = {p.stem: json.loads(p.read_text()) for p in runs}
    return head + "\n" + "\n".join(_dataset(name, run) for name, run in loaded.items()) + "\n" + _cost(loaded)


def _cost(runs: dict) -> str:
    """Item 5: select's wall time against one fit of its most expensive candidate."""
    lines = ["### Cost\n"]
    for name, run in runs.items():
        first = next(iter(run["units"].values()))
        fits = run.get("stats", {}).get("fit_seconds", {})
        n_fits = run.get("stats", {}).get("fits", 0) / max(len(fits), 1)
        slowest = max(fits, key=fits.get) if fits else None
        if not slowest or not n_fits:
            continue
        one = fits[slowest] / n_fits
        total = first["seconds_select"]["total"]
        lines.append(f"- {name}, first held-out unit (no cached fit inside it), n_jobs=1, one thread: select "
                     f"{total:.0f} s (inner CV {first['seconds_select']['inner_cv']:.0f} s, final fit "
                     f"{first['seconds_select']['final_fit']:.0f} s) against {one:.0f} s for one fit of `{slowest}` "
                     f"(mean over its {n_fits:.0f} distinct fits): {total / one:.1f}x.")
    path = RESULTS / "cost.json"
    if path.exists():
        c = json.loads(path.read_text())
        lines.append(f"- {c['dataset']}, every cell, n_jobs={c['n_jobs']} on 2 cores: select {c['select_seconds']:.0f} s "
                     f"against {c['vae_fit_seconds']:.0f} s for one fit of the VAE: {c['ratio']:.1f}x (goal <= 6x).")
    else:
        lines.append("- n_jobs=2 on 2 cores: not measured (`--cost` needs both CPU slots; none were free).")
    return "\n".join(lines) + "\n"
