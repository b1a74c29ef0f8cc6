"""The linear inverse of a PCA encoder: ``x = z @ components + mean``."""

from __future__ import annotations

import torch

from ...component import Decoder

__all__ = ["PCADecoder"]


class PCADecoder(Decoder):
    """Back from PCA scores ``z`` [n, k] to expression [n, genes]."""

    paired_encoder = "pca"

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(0))
        self.register_buffer("components", torch.zeros(0, 0))

    @classmethod
    def from_encoder(cls, encoder) -> "PCADecoder":
        decoder = cls()
        decoder.mean = encoder.mean.clone()
        decoder.components = encoder.components.clone()
        decoder.features = list(encoder.input_features)
        decoder.is_fitted = True
        return decoder

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        self._check_fitted()
        return z @ self.components + self.mean
