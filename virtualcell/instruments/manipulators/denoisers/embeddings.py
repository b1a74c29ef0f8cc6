"""Conditioning embeddings of a denoiser: diffusion timestep, condition / context labels, covariates.

Every embedding maps to the same width ``dim`` so that a denoiser can add them into one
conditioning vector ``c`` [B, dim]. Label embeddings reserve one extra row, the *null* token
(id ``n_labels``), used when a label is dropped for classifier-free guidance or is unknown.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TimestepConditioning", "LabelEmbedding", "CovariateEmbedding"]


class TimestepConditioning(nn.Module):
    """Sinusoidal features of the diffusion timestep followed by a 2-layer MLP (diffusers' blocks).

    ``forward(t [B]) -> [B, dim]``; ``t`` are scheduler timesteps (integers in [0, num_train_timesteps)).
    """

    def __init__(self, dim: int, n_frequencies: int = 128) -> None:
        super().__init__()
        from diffusers.models.embeddings import TimestepEmbedding, Timesteps

        self.features = Timesteps(n_frequencies, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.mlp = TimestepEmbedding(n_frequencies, dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        features = self.features(t.reshape(-1).float())
        return self.mlp(features.to(self.mlp.linear_1.weight.dtype))


class LabelEmbedding(nn.Module):
    """``n_labels`` learned vectors plus a null vector (id ``n_labels``): ``forward(ids [B]) -> [B, dim]``."""

    def __init__(self, n_labels: int, dim: int) -> None:
        super().__init__()
        self.n_labels = n_labels
        self.table = nn.Embedding(n_labels + 1, dim)
        nn.init.normal_(self.table.weight, std=0.02)

    @property
    def null_id(self) -> int:
        return self.n_labels

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table(ids.long())


class CovariateEmbedding(nn.Module):
    """Numeric covariates (dose, time), standardised upstream, with a per-cell *known* mask.

    ``forward(values [B, k], known [B] bool) -> [B, dim]``: unknown (or dropped) rows see zeros and
    a flag, so the network learns a separate "covariates unknown" embedding.
    """

    def __init__(self, n_covariates: int, dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(n_covariates + 1, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, values: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        known = known.to(values.dtype).unsqueeze(1)
        return self.mlp(torch.cat([values * known, known], dim=1))
