"""Principal component analysis in torch: exact for small data, seeded randomized SVD for large."""

from __future__ import annotations

import torch

from ..execution import seeded

__all__ = ["fit_pca"]


def fit_pca(x: torch.Tensor, n_components: int, *, seed: int = 0, exact_limit: int = 4096
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PCA of ``x`` [n, g], signs fixed as scikit-learn's ``svd_flip`` (deterministic).

    Exact (eigendecomposition of the smaller of the two Gram matrices, float64) when
    ``min(n, g) <= exact_limit``; otherwise a seeded randomized SVD (Halko et al., 7 power iterations).
    Returns ``mean`` [g], ``components`` [k, g] (orthonormal rows), ``explained_variance`` [k].
    """
    x = x.double()
    mean = x.mean(0)
    centred = x - mean
    n, g = centred.shape
    k = min(n_components, n, g)
    if min(n, g) <= exact_limit:
        if g <= n:  # covariance [g, g]: eigenvectors are the components
            values, vectors = torch.linalg.eigh(centred.T @ centred)
            order = torch.argsort(values, descending=True)[:k]
            vt = vectors[:, order].T
        else:       # Gram [n, n]: eigenvectors are the left singular vectors
            values, vectors = torch.linalg.eigh(centred @ centred.T)
            order = torch.argsort(values, descending=True)[:k]
            s = values[order].clamp_min(0).sqrt()
            vt = (vectors[:, order].T @ centred) / s.clamp_min(1e-12)[:, None]
        singular = values[order].clamp_min(0).sqrt()
    else:
        with seeded(seed):
            _, singular, v = torch.svd_lowrank(centred, q=min(k + 20, n, g), niter=7)
        singular, vt = singular[:k], v[:, :k].T
    scores = centred @ vt.T                                   # [n, k], signs as svd_flip on u
    signs = torch.sign(scores[torch.argmax(scores.abs(), dim=0), torch.arange(k)])
    signs[signs == 0] = 1
    vt = vt * signs[:, None]
    variance = singular**2 / max(n - 1, 1)
    return mean.float(), vt.float().contiguous(), variance.float()
