"""The selection score: a scale-aware loss per inner unit, its uncertainty, and the one-standard-error rule.

Per unit, an entry's **loss** is the mean over :data:`SELECTION_METRICS` of

- ``1 - pearson_delta`` (0 perfect, 1 no correlation with the real response);
- ``1 - r2_mean_top100`` (R² clipped to [-1, 1]);
- ``edistance_ratio`` = E(P, S) / E(C, S) (0 perfect, 1 as far as the control cells), only where
  E(C, S) > 0: a perturbation without a measurable effect has no meaningful ratio, so that unit is scored
  on the other metrics.

each clipped to [0, 2] and a missing value (a refusal, NaN) counted as 2. All three read "fraction of
the way from perfect to no information", so 0.01 of pearson_delta weighs 0.01, not a full rank
(the mean rank of earlier versions, still reported as ``mean_rank``, did not see effect sizes).

Uncertainty: the entry's loss averaged per fold (units of one fold share one fit, so they are not
independent); the standard error of its paired difference to the best entry over the folds (over the
units where there are fewer than 3 folds). :func:`choose_entry` applies the rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["SELECTION_METRICS", "ENSEMBLE", "RULES", "metric_names", "metric_value", "rank_entries",
           "unit_losses", "choose_entry", "ranked_table"]

#: metric -> +1 (higher is better) or -1 (lower is better); ``top100`` follows ``n_top``
SELECTION_METRICS: dict[str, int] = {"pearson_delta": +1, "edistance_ratio": -1, "r2_mean_top100": +1}
#: the stacked ensemble's entry name
ENSEMBLE = "ensemble"
#: ``one-se``: the first entry (in the a-priori order, simplest first) whose mean loss is within one standard
#: error of the best; ``min``: the lowest mean loss; ``rank``: the lowest mean rank (versions <= 0.x)
RULES = ("one-se", "min", "rank")
_WORST = 2.0
_TIE = 1e-9          # relative: mean losses closer than this are equal (float rounding is not a preference)

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


def _loss(unit_scores: Mapping[str, float], metric: str) -> float:
    value = unit_scores.get(metric, np.nan)
    if metric.startswith("edistance_ratio"):
        control = unit_scores.get("edistance_control", 1.0)
        if control is None or not np.isfinite(control) or control <= 0:
            return np.nan                      # no measurable effect: the ratio says nothing
        loss = value
    elif metric.startswith("r2"):
        loss = 1.0 - np.clip(value, -1.0, 1.0)
    else:
        loss = 1.0 - value
    return float(np.clip(loss, 0.0, _WORST)) if np.isfinite(loss) else _WORST


def unit_losses(scores: Scores, metrics: Mapping[str, int]) -> pd.DataFrame:
    """Scale-aware losses ``[units, entries]`` (see the module doc; lower is better)."""
    entries = list(scores)
    units = list(next(iter(scores.values())))
    out = np.full((len(units), len(entries)), _WORST)
    for i, unit in enumerate(units):
        for j, entry in enumerate(entries):
            values = [_loss(scores[entry][unit], m) for m in metrics]
            values = [v for v in values if np.isfinite(v)]
            out[i, j] = float(np.mean(values)) if values else _WORST
    return pd.DataFrame(out, index=units, columns=entries)


def _groups(losses: pd.DataFrame, fold_of: Mapping[str, str] | None) -> pd.DataFrame:
    """Losses averaged per fold (>= 3 folds), else per unit."""
    if fold_of:
        folds = pd.Series([fold_of.get(u, u) for u in losses.index], index=losses.index)
        if folds.nunique() >= 3:
            return losses.groupby(folds.to_numpy(), sort=False).mean()
    return losses


def choose_entry(losses: pd.DataFrame, order: Sequence[str], rule: str = "one-se",
                 fold_of: Mapping[str, str] | None = None, ranks: pd.DataFrame | None = None
                 ) -> tuple[str, dict[str, float]]:
    """The chosen entry and each entry's standard error of its difference to the best.

    ``order``: the entries simplest first (the one-SE rule's preference and every rule's tie-break);
    ``fold_of``: unit -> fold; ``ranks``: for ``rule="rank"``.
    """
    if rule not in RULES:
        raise ValueError(f"Unknown selection rule {rule!r}; use one of {list(RULES)}.")
    grouped = _groups(losses, fold_of)
    means = grouped.mean()
    best = min(order, key=lambda e: (means[e], order.index(e)))
    n = len(grouped)
    diffs = grouped.sub(grouped[best], axis=0)
    se = {e: float(diffs[e].std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0 for e in order}
    tol = _TIE * max(1.0, abs(float(means[best])))
    if rule == "rank" and ranks is not None:
        mean_rank = ranks.mean()
        low = float(mean_rank.min())
        return next(e for e in order if mean_rank[e] <= low + _TIE * max(1.0, low)), se
    if rule == "min":
        return next(e for e in order if means[e] <= means[best] + tol), se
    return next(e for e in order if means[e] <= means[best] + se[e] + tol), se


def ranked_table(scores: Scores, ranks: pd.DataFrame, losses: pd.DataFrame, metrics: Mapping[str, int],
                 seconds: Mapping[str, float], weights: Mapping[str, float] | None, se: Mapping[str, float],
                 fold_of: Mapping[str, str] | None, budget: str) -> pd.DataFrame:
    """One row per entry, lowest mean loss first (ties: the earlier entry): ``score`` (mean loss) ± ``score_sd``
    (over units), ``score_se`` (of the difference to the best), ``fold_scores``, the mean rank ± sd, unit wins,
    each metric's mean ± sd, fit seconds, ensemble weight and the inner-CV ``budget``."""
    rows = []
    best = ranks.to_numpy().min(1, keepdims=True)
    grouped = _groups(losses, fold_of)
    for entry in ranks.columns:
        row = {"entry": entry, "score": float(losses[entry].mean()), "score_sd": float(losses[entry].std(ddof=0)),
               "score_se": float(se.get(entry, np.nan)),
               "fold_scores": [round(float(v), 6) for v in grouped[entry].to_numpy()],
               "mean_rank": float(ranks[entry].mean()), "rank_sd": float(ranks[entry].std(ddof=0)),
               "unit_wins": int((ranks[entry].to_numpy()[:, None] == best).sum())}
        for metric in metrics:
            values = np.array([metric_value(scores[entry][u], metric, False) for u in ranks.index], dtype=float)
            row[f"{metric}_mean"] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
            row[f"{metric}_sd"] = float(np.nanstd(values)) if np.isfinite(values).any() else float("nan")
        row["seconds_fit"] = seconds.get(entry, float("nan"))
        row["weight"] = (weights or {}).get(entry, float("nan")) if entry != ENSEMBLE else float("nan")
        row["budget"] = budget
        rows.append(row)
    table = pd.DataFrame(rows)
    rounded = np.round(table["score"].to_numpy(), 9)          # float rounding is not a preference
    order = np.lexsort((np.arange(len(table)), rounded))
    return table.iloc[order].reset_index(drop=True)
