"""Calibration of a stochastic prediction's uncertainty about the *mean* response.

A stochastic manipulator returns samples ``P_1 .. P_S`` [S, n, g] of the predicted cells. Each
sample is a whole predicted population, so its per-gene mean ``m_s = mean(P_s)`` [g] is one draw
of the predicted mean response; the central ``level`` interval of ``m_1 .. m_S`` is the predicted
interval of the mean (not the spread of single cells, which is far wider and says nothing about
how sure the model is of the population's response). The interval is calibrated when the real
mean ``mean(S)`` of each gene falls inside it about ``level`` of the time; the coverage is
measured over the top DEGs, where the response is.

The interval's ends are predictive quantiles (``method="weibull"``, see
``virtualcell.pipelines.intervals``): with S samples, a new draw of the predicted mean falls inside
with about ``level`` probability. numpy's default ``"linear"`` quantiles make a narrower interval
(about 0.81 instead of 0.9 for 20 samples); pass ``method="linear"`` to get it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["mean_interval", "interval_coverage", "coverage_curve", "population_samples", "calibration_report"]


def _samples(samples: Any) -> np.ndarray:
    array = np.asarray(samples, dtype=np.float64)
    if array.ndim != 3:
        raise ValueError(f"samples must be [n_samples, cells, genes]; got shape {array.shape}.")
    if array.shape[0] < 2:
        raise ValueError("An interval needs at least 2 samples; predict with n_samples >= 2 (20 or more is better).")
    if not np.isfinite(array).all():
        raise ValueError("samples contain NaN or infinite values.")
    return array


def _genes(idx: Sequence[int] | np.ndarray | None, n_genes: int) -> np.ndarray:
    if idx is None:
        return np.arange(n_genes)
    idx = np.asarray(idx)
    if idx.dtype == bool:
        idx = np.flatnonzero(idx)
    if idx.size == 0:
        raise ValueError("The gene subset is empty.")
    if idx.min() < 0 or idx.max() >= n_genes:
        raise ValueError(f"Gene positions must lie in [0, {n_genes}).")
    return idx.astype(int)


def mean_interval(samples: Any, level: float = 0.9,
                  method: str = "weibull") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Central ``level`` interval of the per-sample mean: ``(lower [g], upper [g], centre [g])``.

    ``samples`` [S, n, g]: S predicted populations of n cells. ``centre`` is the mean over samples.
    ``method``: numpy's quantile method (``"weibull"``: predictive quantiles, see the module doc).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1); got {level}.")
    means = _samples(samples).mean(axis=1)                      # [S, g]
    lower, upper = np.quantile(means, [(1 - level) / 2, (1 + level) / 2], axis=0, method=method)
    return lower, upper, means.mean(axis=0)


def interval_coverage(samples: Any, real: Any, idx: Sequence[int] | np.ndarray | None = None,
                      level: float = 0.9, method: str = "weibull") -> dict[str, float]:
    """How often the real per-gene mean lies in the predicted ``level`` interval of the mean.

    ``samples`` [S, n, g]; ``real`` [r, g] the real perturbed cells; ``idx`` the genes to score
    (positions or a boolean mask; None: all); ``method`` as in :func:`mean_interval`. Returns
    ``coverage`` (fraction of genes covered), ``mean_width`` (average interval width),
    ``mean_abs_error`` (|centre - real mean|) and ``n_genes``.
    """
    from scipy import sparse

    real = real.toarray() if sparse.issparse(real) else np.asarray(real, dtype=np.float64)
    lower, upper, centre = mean_interval(samples, level, method)
    if real.ndim != 2 or real.shape[1] != lower.shape[0]:
        raise ValueError(f"real must be [cells, {lower.shape[0]}] like the samples; got shape {real.shape}.")
    genes = _genes(idx, lower.shape[0])
    truth = real.mean(axis=0)[genes]
    inside = (truth >= lower[genes]) & (truth <= upper[genes])
    return {"coverage": float(inside.mean()), "mean_width": float((upper - lower)[genes].mean()),
            "mean_abs_error": float(np.abs(centre[genes] - truth).mean()), "n_genes": int(genes.size)}


def coverage_curve(samples: Any, real: Any, idx: Sequence[int] | np.ndarray | None = None,
                   levels: Sequence[float] = (0.5, 0.8, 0.9, 0.95), method: str = "weibull") -> dict[str, float]:
    """Coverage at several nominal levels: ``{"0.5": ..., "0.9": ...}`` (calibrated: coverage ~ level)."""
    return {f"{level:g}": interval_coverage(samples, real, idx, level, method)["coverage"] for level in levels}


def population_samples(pipeline, adata, *, target: str, n_samples: int = 20, seed: int = 0,
                       context_effect_scale: float = 1.0, **predict_kwargs: Any) -> np.ndarray:
    """``n_samples`` predicted populations [S, n, g] of ``adata``'s cells under ``target``.

    One ``pipeline.predict_samples(adata, target=..., n_samples=n_samples, seed=seed,
    context_effect_scale=...)`` call (so that whatever a sample shares across its cells, the
    pipeline's random effect of an unobserved context's response and, for a diffusion manipulator,
    its Monte Carlo dropout network, is drawn once per population): the decoded samples that
    ``predict`` reduces to a mean, a variance and quantiles, clamped at 0 as there.
    ``context_effect_scale=0`` leaves the manipulator's own spread alone.
    """
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2 to form an interval; got {n_samples}.")
    decoded, _ = pipeline.predict_samples(adata, target=target, n_samples=n_samples, seed=seed,
                                          context_effect_scale=context_effect_scale, **predict_kwargs)
    return decoded.float().cpu().numpy()


def calibration_report(samples: Any, stim: Any, genes: Sequence[str], degs: Sequence[str],
                       level: float = 0.9, levels: Sequence[float] = (0.5, 0.8, 0.9, 0.95),
                       method: str = "weibull") -> dict[str, Any]:
    """Coverage of the ``level`` interval of the mean over the DEGs ``degs`` (names among ``genes``).

    Returns ``interval_coverage``'s keys plus ``curve`` (coverage at ``levels``), ``level`` and ``method``.
    """
    lookup = {str(g): i for i, g in enumerate(genes)}
    missing = [g for g in degs if str(g) not in lookup]
    if missing:
        raise ValueError(f"degs has genes that are not in genes: {missing[:5]}.")
    idx = np.array([lookup[str(g)] for g in degs], dtype=int)
    return {**interval_coverage(samples, stim, idx, level, method), "level": level, "method": method,
            "curve": coverage_curve(samples, stim, idx, levels, method)}
