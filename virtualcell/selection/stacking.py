"""Stacked-ensemble weights and base member from inner cross-validation only (Breiman's stacking, 1996).

For inner units ``u`` with predicted mean responses ``D_u = [mean(P_uk) - mean(C_u)]_k`` [genes, K] and
real responses ``d_u = mean(S_u) - mean(C_u)``, ``w = argmin sum_u ||D_u w - d_u||^2`` subject to ``w >= 0``
and ``sum(w) = 1``. The ensemble stacks the members' *mean* responses and keeps the cells of one
member, the **base**: ``P = P_base + (sum_k w_k mean(P_k) - mean(P_base))``
(:func:`virtualcell.pipelines.ensemble.stack_cells`), so the members' cell-to-cell variation is not
averaged away. The base is the member with the lowest mean energy-distance ratio (the distribution
metric) over the units with a measurable effect (E(C, S) > 0); ties and no such unit: the largest weight.
For the units of each fold, weights and base come from the *other* folds' units only, so the
ensemble's inner score is as honest as the candidates'. The fitted ensemble is
:class:`virtualcell.pipelines.EnsemblePipeline` with ``combine="mean"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..pipelines.ensemble import stack_cells

__all__ = ["stacking_weights", "choose_base", "leave_fold_out_ensemble", "ensemble_view", "weighted"]


def stacking_weights(deltas: Sequence[np.ndarray], truths: Sequence[np.ndarray], penalty: float = 1e4) -> np.ndarray:
    """Non-negative weights summing to 1 [K] minimising the squared error of the weighted mean response.

    ``deltas``: per unit, the K candidates' predicted mean responses [genes, K]; ``truths``: per unit,
    the real mean response [genes]. Solved by NNLS with the sum-to-one constraint as a heavily
    weighted extra row (``penalty`` times the data's scale).
    """
    from scipy.optimize import nnls

    if not deltas:
        raise ValueError("stacking_weights needs at least one unit.")
    a = np.vstack([np.asarray(d, dtype=np.float64) for d in deltas])
    b = np.concatenate([np.asarray(t, dtype=np.float64) for t in truths])
    scale = penalty * max(float(np.abs(a).max()), 1e-12)
    a = np.vstack([a, np.full((1, a.shape[1]), scale)])
    b = np.append(b, scale)
    weights, _ = nnls(a, b, maxiter=50 * a.shape[1])
    total = weights.sum()
    return weights / total if total > 0 else np.full(a.shape[1], 1.0 / a.shape[1])


def choose_base(edistance: Mapping[str, Mapping[str, float]], labels: Sequence[str], units: Sequence[str],
                weights: Sequence[float]) -> int:
    """Index of the base member: the lowest mean ``edistance[label][unit]`` (ratios; NaN where E(C, S) <= 0)
    over ``units``, among members with weight > 0; no finite value: the largest weight."""
    best, best_value = int(np.argmax(weights)), np.inf
    for k, label in enumerate(labels):
        values = np.array([edistance[label].get(u, np.nan) for u in units], dtype=float)
        if weights[k] <= 1e-6 or not np.isfinite(values).any():
            continue
        value = float(np.nanmean(values))
        if value < best_value - 1e-12:
            best, best_value = k, value
    return best


def leave_fold_out_ensemble(preds: Mapping[str, Mapping[str, np.ndarray]], responses: Mapping[str, tuple],
                            folds: Sequence[tuple[str, Sequence[str]]], labels: Sequence[str],
                            edistance: Mapping[str, Mapping[str, float]] | None = None):
    """Stacked-ensemble predictions of each inner unit with weights and base from the *other* folds' units.

    ``preds[label][unit]`` [n, g]; ``responses[unit]`` = ``(control mean [g], real mean [g])``;
    ``folds``: ``(name, units)``; ``edistance[label][unit]``: the candidates' inner energy-distance
    ratios (NaN where E(C, S) <= 0; None: the base is the largest weight). Returns ``({unit: [n, g]},
    final (weights [K], base), {fold name: (weights [K], base)})``.
    """
    edistance = edistance or {label: {} for label in labels}

    def design(names):
        deltas = [np.stack([preds[label][n].mean(0) - responses[n][0] for label in labels], 1) for n in names]
        return deltas, [responses[n][1] - responses[n][0] for n in names]

    def fitted(names):
        w = stacking_weights(*design(names))
        return w, choose_base(edistance, labels, names, w)

    out, per_fold = {}, {}
    for name, units in folds:
        others = [u for other, members in folds if other != name for u in members]
        w, base = fitted(others)
        per_fold[name] = (w.tolist(), base)
        for unit in units:
            out[unit] = weighted(preds, labels, w, unit, base)
    final = fitted([u for _, members in folds for u in members])
    return out, (final[0].tolist(), final[1]), per_fold


def ensemble_view(preds: Mapping[str, Mapping[str, np.ndarray]], labels: Sequence[str], per_fold: Sequence,
                  final: tuple):
    """``view(fold, unit)`` (see :data:`.spread.View`): the ensemble's prediction of ``unit`` with the
    weights and base fitted without fold ``fold`` (``per_fold[fold]``), or the ``final`` ones (fold None)."""
    def view(fold, unit):
        w, base = final if fold is None else per_fold[fold]
        return weighted(preds, labels, w, unit, base)
    return view


def weighted(preds: Mapping[str, Mapping[str, np.ndarray]], labels: Sequence[str], weights: Sequence[float],
             unit: str, base: int | None = None) -> np.ndarray:
    """The ensemble's prediction of ``unit`` [n, g] (float64): the stacked mean on the ``base`` member's cells
    (:func:`~virtualcell.pipelines.ensemble.stack_cells`); ``base=None``: the weighted mean of the cells."""
    members = [preds[label][unit] for label in labels]
    return stack_cells(members, weights, base)
