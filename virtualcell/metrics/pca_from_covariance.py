"""The distribution metrics' PCA from a streamed covariance: :func:`~.distribution.fit_pca_space`'s randomised SVD
computed from ``C = (X − 1μᵀ)ᵀ(X − 1μᵀ)`` [g, g] instead of the cells [n, g].

``fit_pca_space`` draws ``Ω`` [g, w] from ``default_rng(seed)``, takes ``Q = orth((X − 1μᵀ) Cⁿ Ω)`` by
``n_iter`` power iterations, and returns the top right singular vectors of ``B = Qᵀ(X − 1μᵀ)``. In exact
arithmetic ``BᵀB = C Z (ZᵀCZ)⁻¹ ZᵀC`` for any orthonormal basis ``Z`` of ``span(Cⁿ Ω)``, so with
``ZᵀCZ = LLᵀ`` the right singular vectors and values of ``B`` are the left ones of ``F = C Z L⁻ᵀ``
[g, w]: the same axes (up to float rounding, and the same fixed sign per axis), from the covariance a
streamed pass accumulates over any number of cells (``benchmark`` and ``select`` from disk).
"""

from __future__ import annotations

import numpy as np

from .distribution import PCASpace

__all__ = ["pca_space_from_covariance"]


def pca_space_from_covariance(mean: np.ndarray, comoment: np.ndarray, n: int, n_pcs: int = 50, seed: int = 0, *,
                              float32: bool = True, n_iter: int = 7, oversample: int = 20) -> PCASpace:
    """``fit_pca_space(X, n_pcs, seed, n_iter, oversample)`` from ``mean`` [g] and ``comoment`` [g, g] of the n
    cells of X (``float32``: X was float32 there, so ``Ω`` is drawn and rounded as it would be)."""
    g = comoment.shape[0]
    if n < 2:
        raise ValueError(f"The PCA reference must have >= 2 cells; got {n}.")
    k = min(n_pcs, n - 1, g)
    width = min(k + oversample, n, g)
    c = np.asarray(comoment, dtype=np.float64)
    omega = np.random.default_rng(seed).standard_normal((g, width))
    z = np.linalg.qr(omega.astype(np.float32).astype(np.float64) if float32 else omega)[0]
    for _ in range(n_iter):                      # span(Cⁿ Ω), re-orthonormalised each step
        z = np.linalg.qr(c @ z)[0]
    cz = c @ z
    lower = np.linalg.cholesky(z.T @ cz)         # ZᵀCZ = LLᵀ (positive definite on this span)
    f = np.linalg.solve(lower, cz.T).T           # F = C Z L⁻ᵀ  [g, w]
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    keep = s[:k] > (s[0] if s.size else 0.0) * max(n, g) * np.finfo(np.float64).eps
    axes = u[:, :k][:, keep]
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(axes.shape[1])])   # as fit_pca_space signs them
    return PCASpace(mean=np.asarray(mean, dtype=np.float64), axes=axes * np.where(signs == 0, 1.0, signs))
