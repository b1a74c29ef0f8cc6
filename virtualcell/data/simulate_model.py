"""The generative model shared by the simulators (see :mod:`virtualcell.data.simulate`).

Baselines, sparse perturbation effects, low-rank plus Gaussian noise, relu, optional negative
binomial counts, the exact expectation of a relu'd Gaussian and the Hill dose-response curve.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import ndtr

__all__ = ["expected_relu_mean", "baselines", "signed_magnitudes", "perturbation_effects", "noise_model",
           "sample_group", "to_counts", "float_list", "gene_names", "hill", "LOWRANK_RANK", "LOWRANK_SCALE",
           "NB_THETA", "HILL_N", "simulation_params"]

LOWRANK_RANK = 3
LOWRANK_SCALE = 0.15  # std of the loadings W
NB_THETA = 20.0  # inverse dispersion of the count model
HILL_N = 2.0  # Hill coefficient of the dose-response curve


def expected_relu_mean(m: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Exact ``E[relu(Y)]`` for ``Y ~ N(m, s^2)`` (element-wise; ``m``, ``s`` broadcastable)."""
    m = np.asarray(m, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64)
    r = m / s
    return m * ndtr(r) + s * np.exp(-0.5 * r**2) / np.sqrt(2.0 * np.pi)


def baselines(rng: np.random.Generator, n_genes: int, n_cell_types: int) -> np.ndarray:
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


def signed_magnitudes(rng: np.random.Generator, level: np.ndarray) -> np.ndarray:
    """Effect magnitudes in [0.5, 1.5]; down-regulation only where ``level`` > 0.5 (else up)."""
    mag = rng.uniform(0.5, 1.5, size=level.shape)
    down = (rng.random(level.shape) < 0.4) & (level > 0.5)
    return np.where(down, -mag, mag)


def perturbation_effects(
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
    shared[shared_genes] = signed_magnitudes(rng, mu.mean(0)[shared_genes])
    others = np.setdiff1d(np.arange(n_genes), shared_genes)
    n_spec = min(max(1, n_de // 4), others.size)
    delta = np.empty_like(mu)
    specific_genes: list[np.ndarray] = []
    for k in range(n_types):
        specific = np.zeros(n_genes)
        specific[shared_genes] = rng.normal(0.0, 0.5, size=n_de) * np.abs(shared[shared_genes])
        own = np.sort(rng.choice(others, size=n_spec, replace=False)) if n_spec else np.array([], int)
        if own.size:
            specific[own] = signed_magnitudes(rng, mu[k, own])
        specific_genes.append(own)
        delta[k] = shared + heterogeneity * specific
    return delta, shared, shared_genes, specific_genes


def noise_model(rng: np.random.Generator, n_genes: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Low-rank loadings ``W`` [r, G] and per-gene noise std ``sigma`` [G]."""
    W = rng.normal(0.0, LOWRANK_SCALE, size=(LOWRANK_RANK, n_genes))
    sigma = noise * rng.uniform(0.7, 1.3, size=n_genes)
    return W, sigma


def sample_group(
    rng: np.random.Generator, profiles: np.ndarray, W: np.ndarray, sigma: np.ndarray
) -> np.ndarray:
    """Draw cells ``relu(profiles + z @ W + eps)``; ``profiles`` [n, G] (one row per cell)."""
    n, n_genes = profiles.shape
    z = rng.standard_normal((n, W.shape[0]))
    eps = rng.standard_normal((n, n_genes)) * sigma
    return np.maximum(profiles + z @ W + eps, 0.0)


def to_counts(rng: np.random.Generator, X: np.ndarray, depth: float) -> tuple[np.ndarray, np.ndarray]:
    """NB counts with mean ``size_factor_i * expm1(X_i)``; returns ``(counts [n, G], size_factor [n])``."""
    size_factor = depth * rng.lognormal(0.0, 0.3, size=X.shape[0])
    rate = size_factor[:, None] * np.expm1(X)
    lam = rng.gamma(NB_THETA, rate / NB_THETA)  # gamma(shape, scale); rate==0 -> 0
    return rng.poisson(lam).astype(np.float32), size_factor


def float_list(a: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(a, dtype=np.float64).ravel()]


def gene_names(idx: Sequence[int] | np.ndarray) -> list[str]:
    return [f"gene_{int(g)}" for g in np.sort(np.asarray(idx, dtype=int))]


def hill(dose: np.ndarray | float, ec50: float, n: float = HILL_N) -> np.ndarray:
    """Hill activation ``d^n / (ec50^n + d^n)`` in [0, 1) (0 at dose 0, 0.5 at ``ec50``)."""
    d = np.maximum(np.asarray(dose, dtype=np.float64), 0.0)
    return d**n / (ec50**n + d**n)


def simulation_params(*, effect_size: float, heterogeneity: float, de_fraction: float, noise: float, counts: bool,
                      seed: int) -> dict[str, float | bool | int]:
    """The arguments recorded in ``uns['ground_truth']['params']`` (plain JSON types)."""
    return {"effect_size": float(effect_size), "heterogeneity": float(heterogeneity), "de_fraction": float(de_fraction),
            "noise": float(noise), "counts": bool(counts), "seed": int(seed)}
