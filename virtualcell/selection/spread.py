"""Spread calibration: widen (or narrow) each gene's predicted cell-to-cell spread as inner CV says.

Shifting control cells copies their spread, and decoders shrink it; docs/evaluation.md's
``std_ratio_top100`` shows every method predicting about half of the real spread of the responding
genes. The correction is learnt from the inner units only (never from held-out data):

- per inner unit ``u`` with a measurable effect (E(C, S) > 0: elsewhere the real spread is the
  control cells' and says nothing about the response) and gene ``g``, the log ratio ``log(sd(S_u)_g / sd(P_u)_g)`` of the real to
  the predicted standard deviation over cells (genes with sd ~ 0 on either side are left out);
- the factor ``k_g = exp(median_u log ratio)``, clipped to ``[1/MAX_FACTOR, MAX_FACTOR]``; a gene
  with no usable unit keeps ``k_g = 1``;
- applied with the predicted mean kept: ``m + k_g (P - m)`` per gene, where ``m`` is the predicted
  mean (:func:`virtualcell.pipelines.ensemble.apply_spread`, which the fitted ensemble uses too).
  Non-negative predictions (log-normalised expression) stay non-negative: values below 0 are set to 0
  and the column is then rescaled to its mean ``m`` again (so a gene with many predicted zeros widens
  less than ``k_g``: a conservative step).

In :func:`.choose.select_pipeline` every entry also appears as ``<entry>+spread``: for each fold the
factors come from the *other* folds' units only (as the ensemble's weights do), so its inner score
is as honest as the entry's own; whether spread calibration is used is decided by that score.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Optional

import numpy as np

from ..pipelines.ensemble import EnsemblePipeline, apply_spread

__all__ = ["SUFFIX", "MAX_FACTOR", "spread_factors", "apply_spread", "spread_entries", "with_spread", "spread_summary"]

SUFFIX = "+spread"
#: the factors' bound (a priori, not tuned): at most 4x wider or narrower than predicted
MAX_FACTOR = 4.0
_EPS = 1e-6


def spread_factors(preds: Sequence[np.ndarray], truths: Sequence[np.ndarray],
                   max_factor: float = MAX_FACTOR) -> np.ndarray:
    """Per-gene factors ``k`` [g] from inner units' predictions ``P_u`` [n_u, g] and real cells ``S_u`` [m_u, g]."""
    if not preds or len(preds) != len(truths):
        raise ValueError(f"spread_factors needs one prediction per unit; got {len(preds)} and {len(truths)}.")
    logs = []
    for pred, truth in zip(preds, truths):
        sd_pred = np.asarray(pred, dtype=np.float64).std(axis=0)
        sd_real = np.asarray(truth, dtype=np.float64).std(axis=0)
        usable = (sd_pred > _EPS) & (sd_real > _EPS)
        logs.append(np.where(usable, np.log(np.where(usable, sd_real, 1.0) / np.where(usable, sd_pred, 1.0)), np.nan))
    stacked = np.vstack(logs)
    median = np.zeros(stacked.shape[1])
    usable = np.isfinite(stacked).any(axis=0)
    median[usable] = np.nanmedian(stacked[:, usable], axis=0)
    bound = np.log(max_factor)
    return np.exp(np.clip(median, -bound, bound))


#: ``view(fold, unit)`` -> an entry's prediction [n, g] of ``unit`` as seen from inner fold ``fold`` (its
#: position in ``folds``; None: the final fit on every unit). Candidates ignore ``fold``; the ensemble uses
#: the weights fitted without that fold, so no fold's truth reaches its own calibration.
View = Callable[[Optional[int], str], np.ndarray]


def spread_entries(views: Mapping[str, View], truths: Mapping[str, np.ndarray], folds: Sequence[Sequence[str]],
                   usable: Collection[str] | None = None
                   ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Leave-one-fold-out spread-calibrated predictions of every entry, and each entry's factors from all units.

    ``views[entry]``: see :data:`View`; ``truths[unit]`` [m, g]: the real cells; ``folds``: the units of
    each fold; ``usable``: the units the factors may be learnt from (those with a measurable effect,
    E(C, S) > 0; None: all). A fold whose other folds hold no usable unit keeps factor 1.
    Returns ``({entry + SUFFIX: {unit: [n, g]}}, {entry: factors [g]})``.
    """
    calibrated: dict[str, dict[str, np.ndarray]] = {}
    final: dict[str, np.ndarray] = {}
    every = [u for fold in folds for u in fold]
    learn = [u for u in every if usable is None or u in usable]

    def factors(view, fold, units):
        if not units:
            return np.ones(truths[every[0]].shape[1])
        return spread_factors([view(fold, u) for u in units], [truths[u] for u in units])

    for entry, view in views.items():
        out = {}
        for i, fold in enumerate(folds):
            held = set(fold)
            k = factors(view, i, [u for u in learn if u not in held])
            for unit in fold:
                out[unit] = apply_spread(view(i, unit), k)
        calibrated[entry + SUFFIX] = out
        final[entry] = factors(view, None, learn)
    return calibrated, final


def with_spread(pipeline: Any, label: str, factors: Mapping[str, float]) -> Any:
    """``pipeline`` with spread factors: an ensemble gets them; a single pipeline becomes a one-member ensemble."""
    if isinstance(pipeline, EnsemblePipeline):
        return EnsemblePipeline(pipeline.members, pipeline.weights, pipeline.labels, pipeline.metadata, spread=factors,
                                combine=pipeline.combine, base=pipeline.base)
    return EnsemblePipeline([pipeline], [1.0], [label], pipeline.metadata, spread=factors)


def spread_summary(factors: Mapping[str, np.ndarray] | None, winner: str) -> dict | None:
    """Per entry: quantiles of its spread factors from every inner unit (the winner's are the ones used)."""
    if not factors:
        return None
    summary = {label: {"median": float(np.median(k)), "q10": float(np.quantile(k, 0.1)),
                       "q90": float(np.quantile(k, 0.9)), "max": float(k.max())} for label, k in factors.items()}
    return {"used": winner.endswith(SUFFIX), "factors": summary}
