"""The selection score: entries ranked per inner unit on :data:`SELECTION_METRICS`, averaged (lower is better).

Per unit, the entries are ranked on each metric (``pearson_delta`` and ``r2_mean_top100`` higher is better,
``edistance_ratio`` lower is better; rank 1 best, ties averaged, NaN last); an entry's score is its rank
averaged over the metrics and the units, reported with the standard deviation over units.
``edistance_ratio`` is ranked by its numerator E(P, S): the denominator E(C, S) is shared within a unit
but may be <= 0 where the perturbation has no measurable effect (such units are left out of its mean).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

__all__ = ["SELECTION_METRICS", "ENSEMBLE", "metric_names", "metric_value", "rank_entries", "ranked_table"]

#: metric -> +1 (higher is better) or -1 (lower is better); ``top100`` follows ``n_top``
SELECTION_METRICS: dict[str, int] = {"pearson_delta": +1, "edistance_ratio": -1, "r2_mean_top100": +1}
#: the stacked ensemble's entry name
ENSEMBLE = "ensemble"

Scores = Mapping[str, Mapping[str, Mapping[str, float]]]   # scores[entry][unit][metric]


def metric_names(n_top: int) -> dict[str, int]:
    """:data:`SELECTION_METRICS` with ``top100`` read as ``top{n_top}``."""
    return {k.replace("top100", f"top{n_top}"): v for k, v in SELECTION_METRICS.items()}


def metric_value(unit_scores: Mapping[str, float], metric: str, for_ranking: bool) -> float:
    """A metric's value; ``edistance_ratio`` ranks by its numerator E(P, S) = ratio x E(C, S).

    The ratio's denominator E(C, S) is shared by every entry of a unit, but a U-statistic near 0
    can be negative (a perturbation with no measurable effect), which would reverse the order; the
    numerator never does. Summaries leave such units out of the ratio (it is meaningless there).
    """
    value = unit_scores.get(metric, np.nan)
    control = unit_scores.get("edistance_control")
    if metric == "edistance_ratio" and control is not None:
        if for_ranking:
            return value * control
        return value if control > 0 else np.nan
    return value


def rank_entries(scores: Scores, metrics: Mapping[str, int]) -> pd.DataFrame:
    """Per-unit mean ranks ``[units, entries]`` from ``scores[entry][unit][metric]`` (rank 1 best, NaN last)."""
    from scipy.stats import rankdata

    entries = list(scores)
    units = list(next(iter(scores.values())))
    out = np.zeros((len(units), len(entries)))
    for i, unit in enumerate(units):
        per_metric = []
        for metric, sign in metrics.items():
            values = np.array([metric_value(scores[e][unit], metric, True) for e in entries], dtype=float) * sign
            values = np.where(np.isfinite(values), values, -np.inf)
            per_metric.append(rankdata(-values, method="average"))
        out[i] = np.mean(per_metric, axis=0)
    return pd.DataFrame(out, index=units, columns=entries)


def ranked_table(scores: Scores, ranks: pd.DataFrame, metrics: Mapping[str, int], seconds: Mapping[str, float],
                 weights: Mapping[str, float] | None) -> pd.DataFrame:
    """One row per entry (mean rank ± sd, unit wins, each metric's mean ± sd, fit seconds, ensemble weight),
    best first (ties: the earlier entry)."""
    rows = []
    best = ranks.to_numpy().min(1, keepdims=True)
    for entry in ranks.columns:
        row = {"entry": entry, "mean_rank": float(ranks[entry].mean()), "rank_sd": float(ranks[entry].std(ddof=0)),
               "unit_wins": int((ranks[entry].to_numpy()[:, None] == best).sum())}
        for metric in metrics:
            values = np.array([metric_value(scores[entry][u], metric, False) for u in ranks.index], dtype=float)
            row[f"{metric}_mean"] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
            row[f"{metric}_sd"] = float(np.nanstd(values)) if np.isfinite(values).any() else float("nan")
        row["seconds_fit"] = seconds.get(entry, float("nan"))
        row["weight"] = (weights or {}).get(entry, float("nan")) if entry != ENSEMBLE else float("nan")
        rows.append(row)
    table = pd.DataFrame(rows)
    order = np.lexsort((np.arange(len(table)), table["mean_rank"].to_numpy()))
    return table.iloc[order].reset_index(drop=True)
