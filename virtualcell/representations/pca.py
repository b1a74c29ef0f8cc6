"""PCA encoder: a linear representation by truncated SVD, with its inverse as a decoder."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch

from ..component import Decoder, Encoder
from ..nn.pca import fit_pca

__all__ = ["PCAEncoder", "fit_pca"]  # fit_pca: re-exported from virtualcell.nn.pca


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
        possible = min(x.shape)
        if self.config["n_components"] > possible:
            warnings.warn(f"PCAEncoder(n_components={self.config['n_components']}) on {x.shape[0]} cells x {x.shape[1]} "
                          f"genes: at most {possible} principal components exist, so the representation has "
                          f"{possible} dimensions. Pass n_components<={possible} (CLI: --encoder-option "
                          f"n_components={possible}) to ask for what the data allows.", UserWarning, stacklevel=2)
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
