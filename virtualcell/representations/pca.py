"""PCA encoder: a linear representation by truncated SVD, with its inverse as a decoder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..component import Decoder, Encoder

__all__ = ["PCAEncoder", "fit_pca"]


def fit_pca(x: torch.Tensor, n_components: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact PCA of ``x`` [n, g] by SVD, signs fixed as scikit-learn's ``svd_flip`` (deterministic).

    Returns ``mean`` [g], ``components`` [k, g] (orthonormal rows) and ``explained_variance`` [k].
    """
    x = x.double()
    mean = x.mean(0)
    u, s, vt = torch.linalg.svd(x - mean, full_matrices=False)
    k = min(n_components, vt.shape[0])
    signs = torch.sign(u[torch.argmax(u.abs(), dim=0), torch.arange(u.shape[1])])
    signs[signs == 0] = 1
    vt = vt * signs[:, None]
    variance = s**2 / max(x.shape[0] - 1, 1)
    return mean.float(), vt[:k].float().contiguous(), variance[:k].float()


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
            t.to(x.device) for t in fit_pca(x, self.config["n_components"]))
        self.features = list(features)
        self.is_fitted = True
        return self

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self._check_fitted()
        return (x - self.mean) @ self.components.T

    def paired_decoder(self) -> Decoder:
        from ..instruments.decoders.pca import PCADecoder

        return PCADecoder.from_encoder(self)
