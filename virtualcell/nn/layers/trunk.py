"""The trunk CellGen's generator and discriminator share: grouped tokens, attention, FiLM MLP."""

from __future__ import annotations

import torch
from torch import nn

from .feature_attention import FeatureGroups, GatedFeatureAttention
from .film import FiLM

__all__ = ["CGANTrunk"]


class CGANTrunk(nn.Module):
    """``forward(x [n, d], c [n, cond_dim] | None) -> (tokens [n, G, token_dim], h [n, hidden])``.

    ``x`` is standardised per feature (:meth:`set_standardisation`), cut into ``G`` feature-group
    tokens, FiLM-modulated by ``c`` at the input, mixed by ``n_blocks`` gated attention blocks,
    then flattened through ``n_layers`` of ``Linear -> LayerNorm -> FiLM(c) -> SiLU`` into ``h``.
    With ``cond_dim = 0`` there is no FiLM (the discriminator's trunk, which must not be told the
    condition it is asked to judge); it also sets ``fused_attention=False`` so that its input
    gradient can be differentiated again (the gradient penalty).
    """

    def __init__(self, n_features: int, *, cond_dim: int, n_groups: int = 64, token_dim: int = 32, n_heads: int = 4,
                 n_blocks: int = 1, hidden: int = 256, n_layers: int = 2, dropout: float = 0.0,
                 fused_attention: bool = True) -> None:
        super().__init__()
        self.groups = FeatureGroups(n_features, n_groups, token_dim)
        self.input_film = FiLM(cond_dim, token_dim) if cond_dim else None
        self.blocks = nn.ModuleList(GatedFeatureAttention(token_dim, n_heads, dropout, fused_attention)
                                    for _ in range(n_blocks))
        self.flatten = nn.Linear(self.groups.n_groups * token_dim, hidden)
        self.linears = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(n_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(n_layers))
        self.films = nn.ModuleList(FiLM(cond_dim, hidden) for _ in range(n_layers)) if cond_dim else None
        self.dropout = nn.Dropout(dropout)
        self.hidden = hidden

    @property
    def feature_std(self) -> torch.Tensor:
        return self.groups.feature_std

    @torch.no_grad()
    def set_standardisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per-feature mean and (floored) standard deviation [d] of the training cells."""
        self.groups.feature_mean = mean.detach().float().clone()
        self.groups.feature_std = std.detach().float().clamp_min(1e-6).clone()

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.groups(x)
        if self.input_film is not None:
            tokens = self.input_film(tokens, c)
        for block in self.blocks:
            tokens = block(tokens)
        h = nn.functional.silu(self.flatten(tokens.flatten(1)))
        for i, (linear, norm) in enumerate(zip(self.linears, self.norms)):
            h = norm(linear(self.dropout(h)))
            if self.films is not None:
                h = self.films[i](h, c)
            h = nn.functional.silu(h)
        return tokens, h
