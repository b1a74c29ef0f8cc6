"""The identity decoder: the representation already is expression."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ...component import Decoder

__all__ = ["IdentityDecoder"]


class IdentityDecoder(Decoder):
    """``decode(z [n, genes]) -> z``, naming the columns ``output_features``."""

    paired_encoder = "identity-encoder"

    def __init__(self) -> None:
        super().__init__()

    def fit_features(self, features: Sequence[str]) -> "IdentityDecoder":
        self.features = list(features)
        self.is_fitted = True
        return self

    def fit(self, z: torch.Tensor, x: torch.Tensor, features: Sequence[str], **kwargs: Any) -> "IdentityDecoder":
        if z.shape[1] != len(features):
            raise ValueError(f"IdentityDecoder needs z with one column per feature; got {z.shape[1]} vs {len(features)}.")
        return self.fit_features(features)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        self._check_fitted()
        if z.shape[-1] != len(self.features):
            raise ValueError(f"IdentityDecoder expects {len(self.features)} columns; got {z.shape[-1]}.")
        return z
