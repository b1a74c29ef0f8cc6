"""A residual MLP that predicts diffusion noise for vectors (cells in a latent or gene space).

``x_t`` [B, d] goes through ``depth`` pre-norm residual blocks of width ``hidden``; each block is
modulated by the conditioning vector ``c`` [B, cond_dim] (timestep + condition + context +
covariates) with adaptive layer norm and a zero-initialised gate (DiT's adaLN-Zero), so that the
untrained network is the identity on its residual stream and predicts zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .embeddings import DenoiserConditioning

__all__ = ["ResidualMLPDenoiser", "AdaptiveResidualBlock"]


class AdaptiveResidualBlock(nn.Module):
    """``h + gate(c) * MLP(LN(h) * (1 + scale(c)) + shift(c))`` with dropout on the hidden units.

    ``forward(h [B, w], c [B, cond_dim], mask [B, 4w] | None)``: in training, ordinary dropout; in
    evaluation a given ``mask`` (already scaled by 1 / keep probability) is applied, which lets a
    caller draw one dropout mask per Monte Carlo sample and share it by many cells.
    """

    def __init__(self, width: int, cond_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.modulation = nn.Linear(cond_dim, 3 * width)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)
        self.fc1 = nn.Linear(width, 4 * width)
        self.fc2 = nn.Linear(4 * width, width)
        self.act = nn.SiLU()
        self.dropout = dropout

    @property
    def mask_width(self) -> int:
        return self.fc1.out_features

    def forward(self, h: torch.Tensor, c: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        shift, scale, gate = self.modulation(c).chunk(3, dim=1)
        u = self.act(self.fc1(self.norm(h) * (1 + scale) + shift))
        if self.training and self.dropout > 0:
            u = nn.functional.dropout(u, self.dropout, training=True)
        elif mask is not None:
            u = u * mask.to(u.dtype)
        return h + gate * self.fc2(u)


class ResidualMLPDenoiser(DenoiserConditioning):
    """Noise predictor ``eps(x_t, t, condition, context, covariates)`` for [B, n_features] inputs.

    Args:
        n_features: size of the (normalised) vectors being denoised.
        n_conditions: number of conditions (id ``n_conditions`` is the null condition).
        n_contexts: number of contexts (0: no context input; id ``n_contexts`` is the null context).
        n_covariates: number of numeric covariates (0: none).
        hidden: residual stream width; depth: number of blocks; cond_dim: width of the conditioning vector.
        dropout: dropout on the blocks' hidden units (training, and Monte Carlo sampling with masks).
    """

    def __init__(self, n_features: int, n_conditions: int, n_contexts: int = 0, n_covariates: int = 0, *,
                 hidden: int = 512, depth: int = 4, cond_dim: int = 128, dropout: float = 0.1) -> None:
        super().__init__(n_conditions, n_contexts, n_covariates, cond_dim)
        self.n_features, self.dropout = n_features, dropout
        self.input = nn.Linear(n_features, hidden)
        self.blocks = nn.ModuleList(AdaptiveResidualBlock(hidden, cond_dim, dropout) for _ in range(depth))
        self.output_norm = nn.LayerNorm(hidden)
        self.output = nn.Linear(hidden, n_features)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def mask_widths(self) -> list[int]:
        """Dropout masks: one [n_draws, 4 * hidden] per block."""
        return [block.mask_width for block in self.blocks]

    def forward(self, x: torch.Tensor, t: torch.Tensor, condition: torch.Tensor, context: torch.Tensor | None = None,
                covariates: torch.Tensor | None = None, covariates_known: torch.Tensor | None = None,
                dropout_masks: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Predict the noise (or the scheduler's ``prediction_type`` target) [B, n_features] of ``x`` [B, n_features]."""
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        c = self.conditioning(t, condition, context, covariates, covariates_known)
        h = self.input(x)
        for i, block in enumerate(self.blocks):
            h = block(h, c, None if dropout_masks is None else dropout_masks[i])
        return self.output(self.output_norm(h))
