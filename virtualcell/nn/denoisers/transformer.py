"""A small transformer that predicts diffusion noise over groups of features (DiT / PixArt blocks).

``x_t`` [B, d] is cut into ``n_tokens`` contiguous feature groups (zero-padded to equal size); each
group becomes a token (a shared linear map plus a learned position embedding), and ``depth`` of
diffusers' ``BasicTransformerBlock`` with ``norm_type="ada_norm_single"`` (PixArt-alpha's adaptive
layer norm: shift, scale and gate of attention and feed-forward from the conditioning vector) let
the groups attend to each other. Tokens are mapped back to their features; the output layer is
zero-initialised, so the untrained network predicts zero.

Monte Carlo dropout: each block's update of the token stream goes through dropout, in training
as usual and, in evaluation, through a caller-drawn mask [B, n_tokens * hidden] (one per sample,
shared by its cells), as in ``ResidualMLPDenoiser``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .embeddings import DenoiserConditioning

__all__ = ["FeatureGroupTransformerDenoiser"]


class FeatureGroupTransformerDenoiser(DenoiserConditioning):
    """Noise predictor ``eps(x_t, t, condition, context, covariates)`` for [B, n_features] inputs.

    Args:
        n_features, n_conditions, n_contexts, n_covariates: as ``ResidualMLPDenoiser``.
        hidden: token width; depth: transformer blocks; heads: attention heads (``hidden % heads == 0``).
        n_tokens: feature groups (at most ``n_features``); cond_dim: width of the conditioning vector.
        dropout: dropout on each block's update of the token stream (training and Monte Carlo masks).
    """

    def __init__(self, n_features: int, n_conditions: int, n_contexts: int = 0, n_covariates: int = 0, *,
                 hidden: int = 128, depth: int = 3, heads: int = 4, n_tokens: int = 16, cond_dim: int = 128,
                 dropout: float = 0.1) -> None:
        from diffusers.models.attention import BasicTransformerBlock

        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be a multiple of heads ({heads}).")
        if not 1 <= n_tokens <= n_features:
            raise ValueError(f"n_tokens must lie in [1, n_features={n_features}]; got {n_tokens}.")
        super().__init__(n_conditions, n_contexts, n_covariates, cond_dim)
        self.n_features, self.dropout, self.n_tokens, self.hidden = n_features, dropout, n_tokens, hidden
        self.group_size = math.ceil(n_features / n_tokens)
        self.tokenize = nn.Linear(self.group_size, hidden)
        self.position = nn.Parameter(torch.randn(n_tokens, hidden) * 0.02)
        self.modulation = nn.Linear(cond_dim, 6 * hidden)   # PixArt's t_block: one per network, shared by blocks
        self.blocks = nn.ModuleList(
            BasicTransformerBlock(hidden, heads, hidden // heads, norm_type="ada_norm_single", activation_fn="gelu",
                                  norm_elementwise_affine=False, norm_eps=1e-6)
            for _ in range(depth))
        self.output_norm = nn.LayerNorm(hidden)
        self.output = nn.Linear(hidden, self.group_size)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def mask_widths(self) -> list[int]:
        """Dropout masks: one [n_draws, n_tokens * hidden] per block."""
        return [self.n_tokens * self.hidden for _ in self.blocks]

    def forward(self, x: torch.Tensor, t: torch.Tensor, condition: torch.Tensor, context: torch.Tensor | None = None,
                covariates: torch.Tensor | None = None, covariates_known: torch.Tensor | None = None,
                dropout_masks: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Predict the noise (or the scheduler's ``prediction_type`` target) [B, n_features] of ``x`` [B, n_features]."""
        b = x.shape[0]
        if t.ndim == 0:
            t = t.expand(b)
        c = self.conditioning(t, condition, context, covariates, covariates_known)
        modulation = self.modulation(c)                                       # [B, 6 * hidden]
        padded = nn.functional.pad(x, (0, self.n_tokens * self.group_size - self.n_features))
        h = self.tokenize(padded.reshape(b, self.n_tokens, self.group_size)) + self.position   # [B, T, hidden]
        for i, block in enumerate(self.blocks):
            update = block(h, timestep=modulation) - h
            if self.training and self.dropout > 0:
                update = nn.functional.dropout(update, self.dropout, training=True)
            elif dropout_masks is not None:
                update = update * dropout_masks[i].reshape(b, self.n_tokens, self.hidden).to(update.dtype)
            h = h + update
        out = self.output(self.output_norm(h)).reshape(b, self.n_tokens * self.group_size)
        return out[:, :self.n_features]
