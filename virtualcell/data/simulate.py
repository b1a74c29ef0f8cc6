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
from scipy.special import ndtr

__all__ = [
    "simulate_perturbation",
    "simulate_time_course",
    "ground_truth_mean",
    "expected_relu_mean",
    "hill",
    "logistic_progress",
]

_LOWRANK_RANK = 3
_LOWRANK_SCALE = 0.15  # std of the loadings W
_NB_THETA = 20.0  # inverse dispersion of the count model
_HILL_N = 2.0  # Hill coefficient of the dose-response curve


# --------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------
def expected_relu_mean(m: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Exact ``E[relu(Y)]`` for ``Y ~ N(m, s^2)`` (element-wise; ``m``, ``s`` broadcastable)."""
    m = np.asarray(m, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64)
    r = m / s
    return m * ndtr(r) + s * np.exp(-0.5 * r**2) / np.sqrt(2.0 * np.pi)


def _baselines(rng: np.random.Generator, n_genes: int, n_cell_types: int) -> np.ndarray:
    """Baseline log profiles ``mu`` [n_cell_types, n_genes], non-negative.

    A gamma-distributed gene-level mean (a few highly expressed genes, many moderate ones), ~15 %
    of genes forced near zero (lowly expressed / dropout-like), plus cell-type marker shifts on a
    random ~20 % of genes per type and small type-specific jitter elsewhere.
    """
    base = rng.gamma(shape=2.0, scale=0.6, size=n_genes)
    n_low = int(round(0.15 * n_genes))
    low = rng.choice(n_genes, size=n_low, replace=False)
    base[low] = rng.uniform(0.0, 0.1, size=n_low)
    mu = np.empty((n_cell_types, n_genes))
    n_markers = max(1, int(round(0.2 * n_genes)))
    for k in range(n_cell_types):
        shift = rng.normal(0.0, 0.1, size=n_genes)
        markers = rng.choice(n_genes, size=n_markers, replace=False)
        shift[markers] += rng.choice([-1.0, 1.0], size=n_markers) * rng.uniform(0.5, 1.5, size=n_markers)
        mu[k] = np.maximum(base + shift, 0.0)
    return mu


def _signed_magnitudes(rng: np.random.Generator, level: np.ndarray) -> np.ndarray:
    """Effect magnitudes in [0.5, 1.5]; down-regulation only where ``level`` > 0.5 (else up)."""
    mag = rng.uniform(0.5, 1.5, size=level.shape)
    down = (rng.random(level.shape) < 0.4) & (level > 0.5)
    return np.where(down, -mag, mag)


def _effects(
    rng: np.random.Generator,
    mu: np.ndarray,
    de_fraction: float,
    heterogeneity: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """One perturbation programme: ``delta_k = shared + heterogeneity * specific_k``.

    Returns ``(delta [K, G], shared [G], shared_genes [n_de], specific_genes per type)``. ``shared``
    is non-zero on ``round(de_fraction * G)`` genes (>= 1); ``specific_k`` perturbs the shared genes
    by ``N(0, 0.5^2) * |shared|`` and adds its own effect on ``max(1, n_de // 4)`` type-specific genes.
    """
    n_types, n_genes = mu.shape
    n_de = int(np.clip(round(de_fraction * n_genes), 1, n_genes))
    shared_genes = np.sort(rng.choice(n_genes, size=n_de, replace=False))
    shared = np.zeros(n_genes)
    shared[shared_genes] = _signed_magnitudes(rng, mu.mean(0)[shared_genes])
    others = np.setdiff1d(np.arange(n_genes), shared_genes)
    n_spec = min(max(1, n_de // 4), others.size)
    delta = np.empty_like(mu)
    specific_genes: list[np.ndarray] = []
    for k in range(n_types):
        specific = np.zeros(n_genes)
        specific[shared_genes] = rng.normal(0.0, 0.5, size=n_de) * np.abs(shared[shared_genes])
        own = np.sort(rng.choice(others, size=n_spec, replace=False)) if n_spec else np.array([], int)
        if own.size:
            specific[own] = _signed_magnitudes(rng, mu[k, own])
        specific_genes.append(own)
        delta[k] = shared + heterogeneity * specific
    return delta, shared, shared_genes, specific_genes


def _noise_model(rng: np.random.Generator, n_genes: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Low-rank loadings ``W`` [r, G] and per-gene noise std ``sigma`` [G]."""
    W = rng.normal(0.0, _LOWRANK_SCALE, size=(_LOWRANK_RANK, n_genes))
    sigma = noise * rng.uniform(0.7, 1.3, size=n_genes)
    return W, sigma


def _sample_group(
    rng: np.random.Generator, profiles: np.ndarray, W: np.ndarray, sigma: np.ndarray
) -> np.ndarray:
    """Draw cells ``relu(profiles + z @ W + eps)``; ``profiles`` [n, G] (one row per cell)."""
    n, n_genes = profiles.shape
    z = rng.standard_normal((n, W.shape[0]))
    eps = rng.standard_normal((n, n_genes)) * sigma
    return np.maximum(profiles + z @ W + eps, 0.0)


def _to_counts(rng: np.random.Generator, X: np.ndarray, depth: float) -> tuple[np.ndarray, np.ndarray]:
    """NB counts with mean ``size_factor_i * expm1(X_i)``; returns ``(counts [n, G], size_factor [n])``."""
    size_factor = depth * rng.lognormal(0.0, 0.3, size=X.shape[0])
    rate = size_factor[:, None] * np.expm1(X)
    lam = rng.gamma(_NB_THETA, rate / _NB_THETA)  # gamma(shape, scale); rate==0 -> 0
    return rng.poisson(lam).astype(np.float32), size_factor


def _tolist(a: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(a, dtype=np.float64).ravel()]


def _gene_names(idx: Sequence[int] | np.ndarray) -> list[str]:
    return [f"gene_{int(g)}" for g in np.sort(np.asarray(idx, dtype=int))]


def hill(dose: np.ndarray | float, ec50: float, n: float = _HILL_N) -> np.ndarray:
    """Hill activation ``d^n / (ec50^n + d^n)`` in [0, 1) (0 at dose 0, 0.5 at ``ec50``)."""
    d = np.maximum(np.asarray(dose, dtype=np.float64), 0.0)
    return d**n / (ec50**n + d**n)


# --------------------------------------------------------------------------------------------
# simulate_perturbation
# --------------------------------------------------------------------------------------------
def simulate_perturbation(
    n_cells_per_group: int = 100,
    n_genes: int = 50,
    n_cell_types: int = 3,
    *,
    conditions: Sequence[str] = ("control", "stimulated"),
    effect_size: float = 1.0,
    heterogeneity: float = 0.3,
    de_fraction: float = 0.2,
    doses: Sequence[float] | None = None,
    counts: bool = False,
    noise: float = 0.3,
    depth: float = 20.0,
    seed: int = 0,
) -> ad.AnnData:
    """Simulate cell types x conditions with a known per-group mean response.

    ``conditions[0]`` is the control. For cell type ``k`` (baseline ``mu_k``, non-negative) and
    non-control condition ``j`` the noise-free log profile is ``mu_k + delta_{k,j}`` with::

        delta_{k,j} = effect_size * (shared_j + heterogeneity * specific_{k,j})

    ``shared_j`` is sparse on ``round(de_fraction * n_genes)`` genes (magnitudes 0.5–1.5, up or
    down); ``specific_{k,j}`` perturbs those genes per type and adds a few type-specific DE genes.
    Cells are ``relu(profile + low-rank variation + Gaussian noise)`` (see module docstring).

    Doses: when ``doses`` is given, the ``n_cells_per_group`` cells of every (type, non-control
    condition) group are spread evenly (cyclically) over ``doses`` and ``obs['dose']`` is set
    (0 for controls). The effect then scales with a Hill curve,
    ``delta(d) = hill(d) * delta`` with ``hill(d) = d^n / (ec50^n + d^n)``, ``n = 2`` and
    ``ec50`` = median of the positive doses (stored in ``uns['ground_truth']['dose_response']``).

    Args:
        n_cells_per_group: cells per (cell type, condition) group.
        n_genes: number of genes ``G``.
        n_cell_types: number of cell types ``K`` (named ``type_0``...).
        conditions: condition names, control first (at least one).
        effect_size: global scale of every perturbation effect.
        heterogeneity: weight of the cell-type-specific part of the effect (0 = identical shift).
        de_fraction: fraction of genes in each condition's shared DE set.
        doses: optional dose levels for the non-control conditions (see above).
        counts: if True, ``X`` holds NB integer counts (see module docstring).
        noise: typical per-gene Gaussian noise std in log space.
        depth: typical size factor of the count model (``counts=True`` only).
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        AnnData ``[K * len(conditions) * n_cells_per_group, G]``; ``X`` float32 dense, ``>= 0``.
        ``obs``: ``condition`` (categorical, control first), ``cell_type`` (categorical),
        ``dose`` (when ``doses``), ``size_factor`` (when ``counts``). ``uns['ground_truth']``:
        JSON-able dict with ``means[cell_type][condition]`` (expected ``X`` mean in log space,
        list of ``G`` floats), ``profiles`` (pre-relu), ``effects`` (``delta``),
        ``de_genes[condition]`` (genes with a non-zero effect in any type),
        ``de_genes_shared``, ``de_genes_specific[condition][cell_type]``, ``noise_sd`` and, with
        doses, ``dose_means[cell_type][condition][str(dose)]``.
    """
    conditions = [str(c) for c in conditions]
    if len(conditions) < 1 or len(set(conditions)) != len(conditions):
        raise ValueError(f"`conditions` must be non-empty and unique, got {conditions!r}")
    if n_cells_per_group < 1 or n_genes < 1 or n_cell_types < 1:
        raise ValueError("n_cells_per_group, n_genes and n_cell_types must be >= 1")
    if not 0.0 <= de_fraction <= 1.0:
        raise ValueError(f"de_fraction must be in [0, 1], got {de_fraction}")
    dose_levels = None if doses is None else np.asarray([float(d) for d in doses])
    if dose_levels is not None and (dose_levels.size == 0 or np.any(dose_levels < 0)):
        raise ValueError(f"`doses` must be a non-empty sequence of non-negative numbers, got {doses!r}")

    rng = np.random.default_rng(seed)
    cell_types = [f"type_{k}" for k in range(n_cell_types)]
    mu = _baselines(rng, n_genes, n_cell_types)
    W, sigma = _noise_model(rng, n_genes, noise)
    sd = np.sqrt((W**2).sum(0) + sigma**2)  # [G] total std of the pre-relu Gaussian

    control, perturbed = conditions[0], conditions[1:]
    deltas: dict[str, np.ndarray] = {control: np.zeros_like(mu)}
    de_shared: dict[str, list[str]] = {}
    de_specific: dict[str, dict[str, list[str]]] = {}
    de_genes: dict[str, list[str]] = {control: []}
    for cond in perturbed:
        delta, _, shared_genes, spec_genes = _effects(rng, mu, de_fraction, heterogeneity)
        delta = effect_size * delta
        deltas[cond] = delta
        de_shared[cond] = _gene_names(shared_genes) if effect_size != 0 else []
        nonzero = np.flatnonzero(np.any(np.abs(delta) > 0, axis=0))
        de_genes[cond] = _gene_names(nonzero)
        de_specific[cond] = {
            ct: (_gene_names(g) if heterogeneity != 0 and effect_size != 0 else [])
            for ct, g in zip(cell_types, spec_genes)
        }

    ec50 = None
    if dose_levels is not None:
        pos = dose_levels[dose_levels > 0]
        ec50 = float(np.median(pos)) if pos.size else 1.0

    blocks: list[np.ndarray] = []
    obs_cond: list[str] = []
    obs_type: list[str] = []
    obs_dose: list[float] = []
    means: dict[str, dict[str, list[float]]] = {}
    profiles: dict[str, dict[str, list[float]]] = {}
    effects: dict[str, dict[str, list[float]]] = {}
    dose_means: dict[str, dict[str, dict[str, list[float]]]] = {}
    for k, ct in enumerate(cell_types):
        means[ct], profiles[ct], effects[ct], dose_means[ct] = {}, {}, {}, {}
        for cond in conditions:
            d_kj = deltas[cond][k]
            if dose_levels is not None and cond != control:
                cell_doses = dose_levels[np.arange(n_cells_per_group) % dose_levels.size]
                scale = hill(cell_doses, ec50)
                cell_prof = mu[k] + scale[:, None] * d_kj
                per_dose = {
                    str(float(d)): expected_relu_mean(mu[k] + hill(d, ec50) * d_kj, sd)
                    for d in dose_levels
                }
                dose_means[ct][cond] = {key: _tolist(v) for key, v in per_dose.items()}
                group_mean = expected_relu_mean(cell_prof, sd).mean(0)
                profile = (mu[k] + scale.mean() * d_kj)
            else:
                cell_doses = np.zeros(n_cells_per_group)
                profile = mu[k] + d_kj
                cell_prof = np.broadcast_to(profile, (n_cells_per_group, n_genes))
                group_mean = expected_relu_mean(profile, sd)
                if dose_levels is not None:
                    dose_means[ct][cond] = {"0.0": _tolist(group_mean)}
            blocks.append(_sample_group(rng, cell_prof, W, sigma))
            obs_cond += [cond] * n_cells_per_group
            obs_type += [ct] * n_cells_per_group
            obs_dose += list(cell_doses)
            means[ct][cond] = _tolist(group_mean)
            profiles[ct][cond] = _tolist(profile)
            effects[ct][cond] = _tolist(d_kj)

    X = np.concatenate(blocks, axis=0)
    obs = pd.DataFrame(
        {
            "condition": pd.Categorical(obs_cond, categories=conditions),
            "cell_type": pd.Categorical(obs_type, categories=cell_types),
        },
        index=pd.Index([f"cell_{i}" for i in range(X.shape[0])]),
    )
    if dose_levels is not None:
        obs["dose"] = np.asarray(obs_dose, dtype=np.float64)
    if counts:
        X, size_factor = _to_counts(rng, X, depth)
        obs["size_factor"] = size_factor
    ground_truth: dict[str, Any] = {
        "kind": "perturbation",
        "space": "log",
        "control": control,
        "conditions": conditions,
        "cell_types": cell_types,
        "means": means,
        "profiles": profiles,
        "effects": effects,
        "de_genes": de_genes,
        "de_genes_shared": de_shared,
        "de_genes_specific": de_specific,
        "noise_sd": _tolist(sd),
        "params": {
            "effect_size": float(effect_size),
            "heterogeneity": float(heterogeneity),
            "de_fraction": float(de_fraction),
            "noise": float(noise),
            "counts": bool(counts),
            "seed": int(seed),
        },
    }
    if dose_levels is not None:
        ground_truth["dose_response"] = {
            "model": "hill",
            "ec50": ec50,
            "hill_n": _HILL_N,
            "doses": _tolist(dose_levels),
        }
        ground_truth["dose_means"] = dose_means
    adata = ad.AnnData(
        X=np.ascontiguousarray(X, dtype=np.float32),
        obs=obs,
        var=pd.DataFrame(index=pd.Index([f"gene_{g}" for g in range(n_genes)])),
    )
    adata.uns["ground_truth"] = ground_truth
    return adata


# --------------------------------------------------------------------------------------------
# simulate_time_course
# --------------------------------------------------------------------------------------------
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
    mu = _baselines(rng, n_genes, n_cell_types)
    W, sigma = _noise_model(rng, n_genes, noise)
    sd = np.sqrt((W**2).sum(0) + sigma**2)
    delta, _, shared_genes, spec_genes = _effects(rng, mu, de_fraction, heterogeneity)
    delta = effect_size * delta
    f = logistic_progress(times, times[0], times[-1], midpoint, steepness)

    blocks, obs_cond, obs_type, obs_time = [], [], [], []
    means: dict[str, dict[str, list[float]]] = {}
    profiles: dict[str, dict[str, list[float]]] = {}
    for k, ct in enumerate(cell_types):
        means[ct], profiles[ct] = {}, {}
        for step, t, ft in zip(steps, times, f):
            profile = mu[k] + ft * delta[k]
            blocks.append(_sample_group(rng, np.broadcast_to(profile, (n_cells_per_step, n_genes)), W, sigma))
            obs_cond += [step] * n_cells_per_step
            obs_type += [ct] * n_cells_per_step
            obs_time += [float(t)] * n_cells_per_step
            means[ct][step] = _tolist(expected_relu_mean(profile, sd))
            profiles[ct][step] = _tolist(profile)

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
        X, size_factor = _to_counts(rng, X, depth)
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
        "time_points": _tolist(times),
        "progress": _tolist(f),
        "progress_model": {"model": "logistic", "midpoint": float(midpoint), "steepness": float(steepness)},
        "means": means,
        "profiles": profiles,
        "baseline": {ct: _tolist(mu[k]) for k, ct in enumerate(cell_types)},
        "direction": {ct: _tolist(delta[k]) for k, ct in enumerate(cell_types)},
        "de_genes": _gene_names(nonzero),
        "de_genes_shared": _gene_names(shared_genes) if effect_size != 0 else [],
        "de_genes_specific": {
            ct: (_gene_names(g) if heterogeneity != 0 and effect_size != 0 else [])
            for ct, g in zip(cell_types, spec_genes)
        },
        "noise_sd": _tolist(sd),
        "params": {
            "effect_size": float(effect_size),
            "heterogeneity": float(heterogeneity),
            "de_fraction": float(de_fraction),
            "noise": float(noise),
            "counts": bool(counts),
            "seed": int(seed),
        },
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
