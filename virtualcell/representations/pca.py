"""PCA encoder: a linear representation by truncated SVD, with its inverse as a decoder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..component import Decoder, Encoder

__all__ = ["PCAEncoder", "fit_pca"]


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
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            _, singular, v = torch.svd_lowrank(centred, q=min(k + 20, n, g), niter=7)
        singular, vt = singular[:k], v[:, :k].T
    scores = centred @ vt.T                                   # [n, k], signs as svd_flip on u
    signs = torch.sign(scores[torch.argmax(scores.abs(), dim=0), torch.arange(k)])
    signs[signs == 0] = 1
    vt = vt * signs[:, None]
    variance = singular**2 / max(n - 1, 1)
    return mean.float(), vt.float().contiguous(), variance.float()


class PCAEncoder(Encoder):
    """``z = (x - mean) @ components.T`` with ``n_components`` principal axes.

    Args:
        n_components: size of the representation (capped by the data's rank).
    """

    def __init__(self, n_components: int = 50) -> None:
        super().__init__()
        if n_components < 1:
            raise ValueError(f"n_components must be >= 1; got {n_components}.")
        self.register_buffer("mean", torch.zeros(0))
        self.register_buffer("components", torch.zeros(0, 0))
        self.register_buffer("explained_variance", torch.zeros(0))

    @property
    def n_latent(self) -> int:
        self._check_fitted()
        return int(self.components.shape[0])

    def fit(self, x: torch.Tensor, features: Sequence[str], **kwargs: Any) -> "PCAEncoder":
        if x.shape[1] != len(features):
            raise ValueError(f"x has {x.shape[1]} columns but {len(features)} feature names were given.")
        self.mean, self.components, self.explained_variance = (
            t.to(x.device) for t in fit_pca(x, self.config["n_components"], seed=kwargs.get("seed", 0)))
        self.features = list(features)
        self.is_fitted = True
        return self

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self._check_fitted()
        return (x - self.mean) @ self.components.T

    def paired_decoder(self) -> Decoder:
        from ..instruments.decoders.pca import PCADecoder

        return PCADecoder.from_encoder(self)
