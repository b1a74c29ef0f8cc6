"""Conditioning embeddings of a denoiser: diffusion timestep, condition / context labels, covariates.

Every embedding maps to the same width ``dim`` so that a denoiser can add them into one
conditioning vector ``c`` [B, dim]. Label embeddings reserve one extra row, the *null* token
(id ``n_labels``), used when a label is dropped for classifier-free guidance or is unknown.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TimestepConditioning", "LabelEmbedding", "CovariateEmbedding", "DenoiserConditioning"]


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


class DenoiserConditioning(nn.Module):
    """Base of the denoisers: the embeddings of timestep, condition, context and covariates.

    ``conditioning(t, condition, context, covariates, covariates_known) -> c [B, cond_dim]`` is the
    SiLU of their sum; a missing context or covariate input uses the null / unknown embedding.
    Subclasses set ``dropout`` and list their Monte Carlo dropout mask widths in ``mask_widths()``.
    """

    dropout: float

    def __init__(self, n_conditions: int, n_contexts: int, n_covariates: int, cond_dim: int) -> None:
        super().__init__()
        self.time = TimestepConditioning(cond_dim)
        self.condition = LabelEmbedding(n_conditions, cond_dim)
        self.context = LabelEmbedding(n_contexts, cond_dim) if n_contexts > 0 else None
        self.covariates = CovariateEmbedding(n_covariates, cond_dim) if n_covariates > 0 else None

    def mask_widths(self) -> list[int]:
        """Width of each dropout mask the forward pass takes (one entry per masked layer)."""
        raise NotImplementedError

    def draw_dropout_masks(self, n_draws: int, generator: torch.Generator) -> list[torch.Tensor]:
        """One mask per masked layer and draw: [n_draws, width] tensors (CPU), scaled by 1 / keep probability."""
        keep = 1.0 - self.dropout
        return [(torch.rand(n_draws, width, generator=generator) < keep).float() / keep for width in self.mask_widths()]

    @property
    def null_condition(self) -> int:
        return self.condition.null_id

    @property
    def null_context(self) -> int:
        return self.context.null_id if self.context is not None else 0

    def conditioning(self, t: torch.Tensor, condition: torch.Tensor, context: torch.Tensor | None = None,
                     covariates: torch.Tensor | None = None, covariates_known: torch.Tensor | None = None) -> torch.Tensor:
        """The conditioning vector ``c`` [B, cond_dim] (SiLU of the sum of the embeddings)."""
        c = self.time(t) + self.condition(condition)
        if self.context is not None:
            ids = context if context is not None else torch.full_like(condition, self.null_context)
            c = c + self.context(ids)
        if self.covariates is not None:
            if covariates is None:
                covariates = c.new_zeros(c.shape[0], self.covariates.mlp[0].in_features - 1)
                covariates_known = torch.zeros(c.shape[0], dtype=torch.bool, device=c.device)
            elif covariates_known is None:
                covariates_known = torch.ones(c.shape[0], dtype=torch.bool, device=c.device)
            c = c + self.covariates(covariates.to(c.dtype), covariates_known)
        return nn.functional.silu(c)
