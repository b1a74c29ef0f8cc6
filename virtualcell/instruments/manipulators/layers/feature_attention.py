"""Attention across groups of features: genes (or latent dims) become tokens, tokens attend.

A cell ``x [n, d]`` is cut into ``G`` contiguous groups of ``k = ceil(d / G)`` features (zero
padded), each group projected by its own linear map to a ``token_dim`` token: ``[n, G, token_dim]``.
Multi-head self-attention then mixes information across the groups, added back through a
learned sigmoid gate (a gated residual path, so a block starts close to the identity).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["FeatureGroups", "GatedFeatureAttention", "MultiHeadSelfAttention"]


class FeatureGroups(nn.Module):
    """``forward(x [n, d]) -> tokens [n, G, token_dim]`` with one linear map per feature group.

    ``G = min(n_groups, d)``; the cost is ``d * token_dim`` multiply-adds per cell.
    """

    def __init__(self, n_features: int, n_groups: int, token_dim: int) -> None:
        super().__init__()
        if n_features < 1 or n_groups < 1 or token_dim < 1:
            raise ValueError(f"FeatureGroups needs positive sizes; got n_features={n_features}, "
                             f"n_groups={n_groups}, token_dim={token_dim}.")
        self.n_features = n_features
        self.n_groups = min(n_groups, n_features)
        self.group_size = math.ceil(n_features / self.n_groups)
        self.n_groups = math.ceil(n_features / self.group_size)  # no empty trailing group
        self.token_dim = token_dim
        self.weight = nn.Parameter(torch.randn(self.n_groups, self.group_size, token_dim) / math.sqrt(self.group_size))
        self.bias = nn.Parameter(torch.zeros(self.n_groups, token_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.n_groups * self.group_size - self.n_features
        if pad:
            x = nn.functional.pad(x, (0, pad))
        groups = x.reshape(x.shape[0], self.n_groups, self.group_size)
        return torch.einsum("ngk,gkt->ngt", groups, self.weight) + self.bias


class MultiHeadSelfAttention(nn.Module):
    """``tokens [n, G, t] -> [n, G, t]``: softmax(Q K^T / sqrt(t / heads)) V over the G tokens, per head.

    Written out (not ``scaled_dot_product_attention``) because the critic's gradient penalty
    differentiates through it twice, which fused CPU attention kernels do not support.
    """

    def __init__(self, token_dim: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if token_dim % n_heads:
            raise ValueError(f"token_dim ({token_dim}) must be divisible by n_heads ({n_heads}).")
        self.n_heads, self.head_dim = n_heads, token_dim // n_heads
        self.qkv = nn.Linear(token_dim, 3 * token_dim)
        self.out = nn.Linear(token_dim, token_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n, g, t = tokens.shape
        q, k, v = self.qkv(tokens).reshape(n, g, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-1, -2) / self.head_dim**0.5, dim=-1)   # [n, heads, G, G]
        mixed = self.dropout(weights) @ v                                               # [n, heads, G, hd]
        return self.out(mixed.transpose(1, 2).reshape(n, g, t))


class GatedFeatureAttention(nn.Module):
    """``tokens [n, G, t] -> tokens + sigmoid(gate) * MHA(LN(tokens)) -> + sigmoid(gate2) * FFN(LN(.))``.

    Pre-norm multi-head self-attention and a feed-forward layer, each behind a per-token,
    per-channel sigmoid gate computed from the token itself (gates start near 0.12).
    """

    def __init__(self, token_dim: int, n_heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm_attn = nn.LayerNorm(token_dim)
        self.attention = MultiHeadSelfAttention(token_dim, n_heads, dropout)
        self.gate_attn = nn.Linear(token_dim, token_dim)
        self.norm_ff = nn.LayerNorm(token_dim)
        self.feed_forward = nn.Sequential(nn.Linear(token_dim, 2 * token_dim), nn.SiLU(), nn.Linear(2 * token_dim, token_dim))
        self.gate_ff = nn.Linear(token_dim, token_dim)
        for gate in (self.gate_attn, self.gate_ff):
            nn.init.zeros_(gate.weight)
            nn.init.constant_(gate.bias, -2.0)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.norm_attn(tokens)
        tokens = tokens + torch.sigmoid(self.gate_attn(h)) * self.attention(h)
        h = self.norm_ff(tokens)
        return tokens + torch.sigmoid(self.gate_ff(h)) * self.feed_forward(h)
