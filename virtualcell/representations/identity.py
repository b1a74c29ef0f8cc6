"""The identity encoder: gene space as the representation (to run manipulators on expression)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..component import Decoder, Encoder

__all__ = ["IdentityEncoder"]


class IdentityEncoder(Encoder):
    """``encode(x [n, genes]) -> x``: the representation is the (preprocessed) expression itself."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def n_latent(self) -> int:
        return len(self.input_features)

    def fit(self, x: torch.Tensor, features: Sequence[str], **kwargs: Any) -> "IdentityEncoder":
        if x.shape[1] != len(features):
            raise ValueError(f"x has {x.shape[1]} columns but {len(features)} feature names were given.")
        self.features = list(features)
        self.is_fitted = True
        return self

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self._check_fitted()
        if x.shape[-1] != len(self.features):
            raise ValueError(f"IdentityEncoder expects {len(self.features)} genes; got {x.shape[-1]}.")
        return x

    def paired_decoder(self) -> Decoder:
        from ..instruments.decoders.identity import IdentityDecoder

        return IdentityDecoder().fit_features(self.input_features)
