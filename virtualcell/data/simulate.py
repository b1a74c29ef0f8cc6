"""Synthetic single-cell perturbation data with a known ground truth.

Two generators are provided:

* :func:`simulate_perturbation` – cell types x conditions (optionally with doses);
* :func:`simulate_time_course` – cell types along a non-linear (logistic) trajectory.

Generative model (shared by both)
---------------------------------
For a cell ``i`` of cell type ``k`` in group ``c`` (a condition or a time point)::

    m_{k,c}  = mu_k + delta_{k,c}                          # noise-free log profile  [genes]
    x_i      = relu(m_{k,c} + z_i @ W + eps_i)              # observed log expression [genes]
    z_i ~ N(0, I_r),  W [r, genes] fixed,  eps_i ~ N(0, diag(sigma^2))

so every gene of every group is ``relu`` of a Gaussian with mean ``m`` and standard deviation
``s = sqrt(sum_r W[r]^2 + sigma^2)``. The ground truth stored in ``uns['ground_truth']['means']``
is the *exact* expectation of ``X`` for that group, ``E[relu(N(m, s^2))] = m Phi(m/s) + s phi(m/s)``,
i.e. it lives in the same space as ``X`` (``counts=False``) and empirical per-group means converge
to it. The pre-``relu`` profile ``m`` is stored as ``uns['ground_truth']['profiles']``.

With ``counts=True``, ``X`` holds integer counts (float32 dtype, integer values) drawn from a
negative binomial (gamma-Poisson, inverse dispersion ``theta = 20``) with mean
``size_factor_i * expm1(x_i)``; the per-cell library size factor is in ``obs['size_factor']``.
``log1p(X / size_factor)`` approximately recovers the log-space ``x`` (up to sampling noise), so
the ground truth keeps referring to the log space.

All randomness comes from ``numpy.random.default_rng(seed)``: the same arguments and seed give an
identical AnnData.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from .simulate_model import (baselines, expected_relu_mean, float_list, gene_names, hill, noise_model,
                             perturbation_effects, sample_group, simulation_params, to_counts)
from .simulate_perturbation import simulate_perturbation

__all__ = [
    "simulate_perturbation",
    "simulate_time_course",
    "ground_truth_mean",
    "expected_relu_mean",
    "hill",
    "logistic_progress",
]


def logistic_progress(
    t: np.ndarray | float, t_min: float, t_max: float, midpoint: float, steepness: float
) -> np.ndarray:
    """Monotone sigmoidal progress ``f(t)`` rescaled so ``f(t_min) = 0`` and ``f(t_max) = 1``."""
    def raw(x: np.ndarray | float) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-steepness * (np.asarray(x, dtype=np.float64) - midpoint)))

    lo, hi = raw(t_min), raw(t_max)
    if hi - lo <= 0:
        return np.zeros_like(np.asarray(t, dtype=np.float64))
    return (raw(t) - lo) / (hi - lo)


def simulate_time_course(
    n_cells_per_step: int = 60,
    n_genes: int = 50,
    n_cell_types: int = 2,
    *,
    time_points: Sequence[float] = (0, 1, 2, 3, 4),
    effect_size: float = 1.5,
    heterogeneity: float = 0.3,
    de_fraction: float = 0.3,
    midpoint: float | None = None,
    steepness: float = 2.0,
    counts: bool = False,
    noise: float = 0.3,
    depth: float = 20.0,
    seed: int = 0,
) -> ad.AnnData:
    """Simulate an EMT-like trajectory: cell types drifting along a logistic programme.

    The noise-free log profile of type ``k`` at time ``t`` is ``mu_k + f(t) * delta_k`` with
    ``delta_k = effect_size * (shared + heterogeneity * specific_k)`` (as in
    :func:`simulate_perturbation`) and the monotone, non-linear progress::

        f(t) = (L(t) - L(t_0)) / (L(t_last) - L(t_0)),  L(t) = 1 / (1 + exp(-steepness * (t - midpoint)))

    so ``f`` goes from 0 at the first to 1 at the last time point, slowly at both ends and fast
    around ``midpoint`` (default: middle of the time range): successive time steps are *not*
    equal shifts.

    Args:
        n_cells_per_step: cells per (cell type, time point) group.
        n_genes: number of genes ``G``.
        n_cell_types: number of cell types ``K`` (named ``type_0``...).
        time_points: increasing time values; the groups are named ``t0``, ``t1``... by index.
        effect_size, heterogeneity, de_fraction: as in :func:`simulate_perturbation`.
        midpoint: centre of the logistic (default ``(t_first + t_last) / 2``).
        steepness: slope of the logistic (larger = more switch-like).
        counts, noise, depth: as in :func:`simulate_perturbation`.
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        AnnData ``[K * len(time_points) * n_cells_per_step, G]``, ``X`` float32 ``>= 0``.
        ``obs``: ``condition`` (ordered categorical ``t0 < t1 < ...``), ``time`` (float),
        ``cell_type``; ``uns['condition_order']`` = ``['t0', 't1', ...]``;
        ``uns['ground_truth']``: ``means[cell_type][condition]`` (expected ``X`` mean),
        ``profiles``, ``progress`` (``f(t)`` per time point), ``direction[cell_type]`` (``delta_k``),
        ``baseline[cell_type]`` (``mu_k``), ``de_genes`` and ``time_points``.
    """
    times = np.asarray([float(t) for t in time_points])
    if times.size < 2 or np.any(np.diff(times) <= 0):
        raise ValueError(f"`time_points` must hold >= 2 strictly increasing values, got {time_points!r}")
    if n_cells_per_step < 1 or n_genes < 1 or n_cell_types < 1:
        raise ValueError("n_cells_per_step, n_genes and n_cell_types must be >= 1")
    if midpoint is None:
        midpoint = float(times[0] + times[-1]) / 2.0
    rng = np.random.default_rng(seed)
    cell_types = [f"type_{k}" for k in range(n_cell_types)]
    steps = [f"t{i}" for i in range(times.size)]
    mu = baselines(rng, n_genes, n_cell_types)
    W, sigma = noise_model(rng, n_genes, noise)
    sd = np.sqrt((W**2).sum(0) + sigma**2)
    delta, _, shared_genes, spec_genes = perturbation_effects(rng, mu, de_fraction, heterogeneity)
    delta = effect_size * delta
    f = logistic_progress(times, times[0], times[-1], midpoint, steepness)

    blocks, obs_cond, obs_type, obs_time = [], [], [], []
    means: dict[str, dict[str, list[float]]] = {}
    profiles: dict[str, dict[str, list[float]]] = {}
    for k, ct in enumerate(cell_types):
        means[ct], profiles[ct] = {}, {}
        for step, t, ft in zip(steps, times, f):
            profile = mu[k] + ft * delta[k]
            blocks.append(sample_group(rng, np.broadcast_to(profile, (n_cells_per_step, n_genes)), W, sigma))
            obs_cond += [step] * n_cells_per_step
            obs_type += [ct] * n_cells_per_step
            obs_time += [float(t)] * n_cells_per_step
            means[ct][step] = float_list(expected_relu_mean(profile, sd))
            profiles[ct][step] = float_list(profile)

    X = np.concatenate(blocks, axis=0)
    obs = pd.DataFrame(
        {
            "condition": pd.Categorical(obs_cond, categories=steps, ordered=True),
            "time": np.asarray(obs_time, dtype=np.float64),
            "cell_type": pd.Categorical(obs_type, categories=cell_types),
        },
        index=pd.Index([f"cell_{i}" for i in range(X.shape[0])]),
    )
    if counts:
        X, size_factor = to_counts(rng, X, depth)
        obs["size_factor"] = size_factor
    nonzero = np.flatnonzero(np.any(np.abs(delta) > 0, axis=0))
    adata = ad.AnnData(
        X=np.ascontiguousarray(X, dtype=np.float32),
        obs=obs,
        var=pd.DataFrame(index=pd.Index([f"gene_{g}" for g in range(n_genes)])),
    )
    adata.uns["condition_order"] = list(steps)
    adata.uns["ground_truth"] = {
        "kind": "time_course",
        "space": "log",
        "control": steps[0],
        "conditions": list(steps),
        "cell_types": cell_types,
        "time_points": float_list(times),
        "progress": float_list(f),
        "progress_model": {"model": "logistic", "midpoint": float(midpoint), "steepness": float(steepness)},
        "means": means,
        "profiles": profiles,
        "baseline": {ct: float_list(mu[k]) for k, ct in enumerate(cell_types)},
        "direction": {ct: float_list(delta[k]) for k, ct in enumerate(cell_types)},
        "de_genes": gene_names(nonzero),
        "de_genes_shared": gene_names(shared_genes) if effect_size != 0 else [],
        "de_genes_specific": {
            ct: (gene_names(g) if heterogeneity != 0 and effect_size != 0 else [])
            for ct, g in zip(cell_types, spec_genes)
        },
        "noise_sd": float_list(sd),
        "params": simulation_params(effect_size=effect_size, heterogeneity=heterogeneity, de_fraction=de_fraction,
                                    noise=noise, counts=counts, seed=seed),
    }
    return adata


# --------------------------------------------------------------------------------------------
# ground-truth access
# --------------------------------------------------------------------------------------------
def ground_truth_mean(
    adata: ad.AnnData | Mapping[str, Any],
    cell_type: str,
    condition: str,
    dose: float | None = None,
) -> np.ndarray:
    """Noise-free expected per-gene mean ``[genes]`` of ``X`` (log space) for one group.

    Works for both simulators (``condition`` is a time-point label such as ``'t2'`` for a time
    course). ``adata`` may also be the ``uns['ground_truth']`` mapping itself. With ``dose``
    (dose simulations only) returns the expectation at that dose level.
    """
    gt = adata.uns["ground_truth"] if isinstance(adata, ad.AnnData) else adata
    if "means" not in gt:
        raise KeyError("no simulator ground truth found (expected uns['ground_truth']['means'])")
    means = gt["means"]
    if cell_type not in means:
        raise KeyError(f"unknown cell_type {cell_type!r}; known: {sorted(means)}")
    if condition not in means[cell_type]:
        raise KeyError(f"unknown condition {condition!r}; known: {list(means[cell_type])}")
    if dose is None:
        return np.asarray(means[cell_type][condition], dtype=np.float64)
    if "dose_means" not in gt:
        raise KeyError("this simulation has no doses (uns['ground_truth']['dose_means'] missing)")
    per_dose = gt["dose_means"][cell_type][condition]
    key = str(float(dose))
    if key not in per_dose:
        raise KeyError(f"unknown dose {dose!r} for {condition!r}; known: {list(per_dose)}")
    return np.asarray(per_dose[key], dtype=np.float64)
