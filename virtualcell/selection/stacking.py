"""Stacked-ensemble weights from inner cross-validation only (Breiman's stacking, 1996).

For inner units ``u`` with predicted mean responses ``D_u = [mean(P_uk) - mean(C_u)]_k`` [genes, K] and
real responses ``d_u = mean(S_u) - mean(C_u)``, ``w = argmin sum_u ||D_u w - d_u||^2`` subject to ``w >= 0``
and ``sum(w) = 1``. For the units of each fold the weights are fitted on the *other* folds' units only, so
the ensemble's inner score is as honest as the candidates'. The fitted ensemble is
:class:`virtualcell.pipelines.EnsemblePipeline`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["stacking_weights", "leave_fold_out_ensemble", "ensemble_view", "weighted"]


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


def leave_fold_out_ensemble(preds: Mapping[str, Mapping[str, np.ndarray]], responses: Mapping[str, tuple],
                            folds: Sequence[tuple[str, Sequence[str]]], labels: Sequence[str]):
    """Stacked-ensemble predictions of each inner unit with weights fitted on the *other* folds' units.

    ``preds[label][unit]`` [n, g]; ``responses[unit]`` = ``(control mean [g], real mean [g])``;
    ``folds``: ``(name, units)``. Returns ``({unit: [n, g]}, final weights [K] from every unit,
    {fold name: weights [K]})``.
    """
    def design(names):
        deltas = [np.stack([preds[label][n].mean(0) - responses[n][0] for label in labels], 1) for n in names]
        return deltas, [responses[n][1] - responses[n][0] for n in names]

    out, per_fold = {}, {}
    for name, units in folds:
        others = [u for other, members in folds if other != name for u in members]
        w = stacking_weights(*design(others))
        per_fold[name] = w.tolist()
        for unit in units:
            out[unit] = weighted(preds, labels, w, unit)
    final = stacking_weights(*design([u for _, members in folds for u in members]))
    return out, final, per_fold


def ensemble_view(preds: Mapping[str, Mapping[str, np.ndarray]], labels: Sequence[str], per_fold: Sequence,
                  final: Sequence[float]):
    """``view(fold, unit)`` (see :data:`.spread.View`): the ensemble's prediction of ``unit`` with the
    weights fitted without fold ``fold`` (``per_fold[fold]``), or with the ``final`` weights (fold None)."""
    def view(fold, unit):
        return weighted(preds, labels, final if fold is None else per_fold[fold], unit)
    return view


def weighted(preds: Mapping[str, Mapping[str, np.ndarray]], labels: Sequence[str], weights: Sequence[float],
             unit: str) -> np.ndarray:
    """The ``weights``-weighted sum of the candidates' predictions of ``unit`` [n, g] (float64)."""
    return sum(float(w) * preds[label][unit].astype(np.float64) for w, label in zip(weights, labels))
