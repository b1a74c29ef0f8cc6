"""Feature-wise Linear Modulation (FiLM, Perez et al. 2018): ``h * (1 + gamma(c)) + beta(c)``."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FiLM"]


class FiLM(nn.Module):
    """Scale and shift features by functions of a condition vector.

    ``forward(h [n, ..., features], c [n, cond_dim]) -> [n, ..., features]``: ``gamma`` and ``beta``
    are linear in ``c`` and broadcast over any middle axes (tokens). Initialised to the identity
    (``gamma = beta = 0``), so an untrained FiLM layer passes ``h`` through unchanged.
    """

    def __init__(self, cond_dim: int, features: int) -> None:
        super().__init__()
        self.features = features
        self.to_scale_shift = nn.Linear(cond_dim, 2 * features)
        nn.init.zeros_(self.to_scale_shift.weight)
        nn.init.zeros_(self.to_scale_shift.bias)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if h.shape[-1] != self.features:
            raise ValueError(f"FiLM expects {self.features} features in the last axis; got {tuple(h.shape)}.")
        gamma, beta = self.to_scale_shift(c).chunk(2, dim=-1)
        shape = (c.shape[0],) + (1,) * (h.ndim - 2) + (self.features,)
        return h * (1 + gamma.reshape(shape)) + beta.reshape(shape)
