"""PERT ``discrimination`` (docs/evaluation.md): can the prediction for one target tell it from the others?

For each held-out target ``t``, the real pseudobulks (per-gene means) of all held-out targets are
ranked by L1 distance to the predicted pseudobulk of ``t``; the score is the rank of ``t`` itself
(0 = nearest) divided by ``n_targets − 1``. 0 is perfect, about 0.5 is chance, 1 the worst: it is
cell-eval's ``discrimination_score`` inverted. Ties count against the prediction (a target tied with
the truth ranks ahead of it), so a method that predicts the same response for every target scores
about chance, however good its R².
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["discrimination"]


def discrimination(predicted: Mapping[str, np.ndarray], real: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Per-target discrimination scores from pseudobulks ``{target: [g]}`` (or cells ``[n, g]``, averaged).

    ``predicted`` and ``real`` must have the same targets (at least 2). Returns ``{target: score}``.
    """
    targets = list(real)
    if sorted(map(str, predicted)) != sorted(map(str, targets)):
        raise ValueError(f"predicted and real must hold the same targets; got {sorted(predicted)} and {sorted(real)}.")
    if len(targets) < 2:
        raise ValueError("discrimination needs at least 2 held-out targets.")

    def bulk(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return x.mean(axis=0) if x.ndim == 2 else x

    real_bulks = np.stack([bulk(real[t]) for t in targets])                     # [T, g]
    scores: dict[str, float] = {}
    for i, target in enumerate(targets):
        pred = bulk(predicted[target])
        if pred.shape != real_bulks.shape[1:]:
            raise ValueError(f"The prediction for {target!r} has shape {pred.shape}; expected {real_bulks.shape[1:]}.")
        dist = np.abs(real_bulks - pred).sum(axis=1)                              # [T]
        others = np.delete(dist, i)
        scores[target] = float((others <= dist[i]).sum()) / (len(targets) - 1)
    return scores
