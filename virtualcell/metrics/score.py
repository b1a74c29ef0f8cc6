"""The one scoring function: a prediction of one held-out unit against that unit's real cells.

Every caller (the benchmark, PERT-unseen, the noise ceiling, pipeline selection's inner CV) builds
the unit's :class:`HeldOutTruth` once with :func:`held_out_truth` (the real cells, their DEGs, the
PCA space of the distribution metrics) and scores each prediction with :func:`score_prediction`,
metrics v2 of docs/evaluation.md (:func:`.perturbation.perturbation_metrics`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from ..execution import torch_threads
from .distribution import PCASpace
from .perturbation import perturbation_metrics, top_degs

__all__ = ["HeldOutTruth", "held_out_truth", "score_prediction"]


@dataclasses.dataclass(frozen=True, eq=False)
class HeldOutTruth:
    """One held-out unit's real cells: ``stim`` S [s, g] and ``ctrl`` C [c, g] (float64), the ``genes`` (g names),
    the ``degs`` (top ``n_top`` of S vs C), the PCA ``space`` fitted outside the unit, and the metrics' ``seed``."""

    stim: np.ndarray
    ctrl: np.ndarray
    genes: list[str]
    degs: list[str]
    space: PCASpace
    n_top: int
    seed: int


def held_out_truth(stim: np.ndarray, ctrl: np.ndarray, genes: Sequence[str], *, n_top: int = 100,
                   space: PCASpace, seed: int = 0, degs: Sequence[str] | None = None) -> HeldOutTruth:
    """The :class:`HeldOutTruth` of S = ``stim`` [s, g] and C = ``ctrl`` [c, g]; ``degs`` None: the Wilcoxon top
    ``n_top`` of S vs C (torch's thread count, which scanpy's numba test may change, is restored after it)."""
    stim, ctrl = np.asarray(stim, dtype=np.float64), np.asarray(ctrl, dtype=np.float64)
    genes = [str(g) for g in genes]
    if degs is None:
        with torch_threads():
            degs = top_degs(stim, ctrl, genes, n=n_top)
    return HeldOutTruth(stim, ctrl, genes, list(degs), space, n_top, seed)


def score_prediction(pred: np.ndarray, truth: HeldOutTruth) -> dict[str, float]:
    """Metrics v2 of the predicted cells ``pred`` [p, g] (``truth.genes`` order) against ``truth``."""
    with torch_threads():
        return perturbation_metrics(pred, truth.stim, truth.ctrl, truth.genes, n_top=truth.n_top, degs=truth.degs,
                                    reference=truth.space, seed=truth.seed)
