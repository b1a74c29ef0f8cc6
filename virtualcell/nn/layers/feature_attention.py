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

__all__ = ["FeatureGroups", "GroupDecoder", "GatedFeatureAttention", "MultiHeadSelfAttention"]


class FeatureGroups(nn.Module):
    """``forward(x [n, d]) -> tokens [n, G, token_dim]`` with one linear map per feature group.

    ``G = ceil(d / ceil(d / n_groups))`` (at most ``n_groups``); the input is standardised with
    the buffers ``feature_mean`` / ``feature_std`` [d] folded into the weights, so the cost stays
    ``d * token_dim`` multiply-adds per cell with no [n, d] arithmetic besides the padding.
    """

    def __init__(self, n_features: int, n_groups: int, token_dim: int) -> None:
        super().__init__()
        if n_features < 1 or n_groups < 1 or token_dim < 1:
            raise ValueError(f"FeatureGroups needs positive sizes; got n_features={n_features}, "
                             f"n_groups={n_groups}, token_dim={token_dim}.")
        self.n_features = n_features
        self.group_size = math.ceil(n_features / min(n_groups, n_features))
        self.n_groups = math.ceil(n_features / self.group_size)  # no empty trailing group
        self.token_dim = token_dim
        self.weight = nn.Parameter(torch.randn(self.n_groups, self.group_size, token_dim) / math.sqrt(self.group_size))
        self.bias = nn.Parameter(torch.zeros(self.n_groups, token_dim))
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_std", torch.ones(n_features))

    def _grouped(self, v: torch.Tensor, fill: float) -> torch.Tensor:
        pad = self.n_groups * self.group_size - self.n_features
        if pad:
            v = nn.functional.pad(v, (0, pad), value=fill)
        return v.reshape(*v.shape[:-1], self.n_groups, self.group_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inv_std = 1.0 / self._grouped(self.feature_std, 1.0)                 # [G, k]
        weight = self.weight * inv_std[..., None]                             # [G, k, t]
        bias = self.bias - torch.einsum("gk,gkt->gt", self._grouped(self.feature_mean, 0.0), weight)
        return torch.einsum("ngk,gkt->ngt", self._grouped(x, 0.0), weight) + bias


class GroupDecoder(nn.Module):
    """``forward(tokens [n, G, t]) -> [n, d * n_outputs]``: each group's token decodes its own features.

    Output ``j`` of feature ``i`` is at column ``j * d + i``; zero-initialised (outputs start at 0).
    """

    def __init__(self, groups: FeatureGroups, n_outputs: int) -> None:
        super().__init__()
        self.n_features, self.n_outputs = groups.n_features, n_outputs
        self.n_groups, self.group_size = groups.n_groups, groups.group_size
        self.weight = nn.Parameter(torch.zeros(self.n_groups, groups.token_dim, n_outputs * self.group_size))
        self.bias = nn.Parameter(torch.zeros(self.n_groups, n_outputs * self.group_size))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out = torch.einsum("ngt,gtk->ngk", tokens, self.weight) + self.bias          # [n, G, J * k]
        out = out.reshape(tokens.shape[0], self.n_groups, self.n_outputs, self.group_size).transpose(1, 2)
        out = out.reshape(tokens.shape[0], self.n_outputs, self.n_groups * self.group_size)[..., : self.n_features]
        return out.reshape(tokens.shape[0], -1)


class MultiHeadSelfAttention(nn.Module):
    """``tokens [n, G, t] -> [n, G, t]``: softmax(Q K^T / sqrt(t / heads)) V over the G tokens, per head.

    ``fused=True`` uses ``scaled_dot_product_attention`` (about twice as fast on CPU); ``False``
    writes the product out, which can be differentiated twice (the critic's gradient penalty
    needs that; fused CPU kernels have no double backward).
    """

    def __init__(self, token_dim: int, n_heads: int, dropout: float = 0.0, fused: bool = True) -> None:
        super().__init__()
        if token_dim % n_heads:
            raise ValueError(f"token_dim ({token_dim}) must be divisible by n_heads ({n_heads}).")
        self.n_heads, self.head_dim, self.fused = n_heads, token_dim // n_heads, fused
        self.qkv = nn.Linear(token_dim, 3 * token_dim)
        self.out = nn.Linear(token_dim, token_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n, g, t = tokens.shape
        q, k, v = self.qkv(tokens).reshape(n, g, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.fused:
            p = self.dropout.p if self.training else 0.0
            mixed = nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=p)
        else:
            weights = torch.softmax((q * self.head_dim**-0.5) @ k.transpose(-1, -2), dim=-1)   # [n, heads, G, G]
            mixed = self.dropout(weights) @ v                                                   # [n, heads, G, hd]
        return self.out(mixed.transpose(1, 2).reshape(n, g, t))


class GatedFeatureAttention(nn.Module):
    """``tokens [n, G, t] -> tokens + sigmoid(gate) * MHA(LN(tokens)) -> + sigmoid(gate2) * FFN(LN(.))``.

    Pre-norm multi-head self-attention and a feed-forward layer, each behind a per-token,
    per-channel sigmoid gate computed from the token itself (gates start near 0.12).
    """

    def __init__(self, token_dim: int, n_heads: int = 4, dropout: float = 0.0, fused: bool = True) -> None:
        super().__init__()
        self.norm_attn = nn.LayerNorm(token_dim)
        self.attention = MultiHeadSelfAttention(token_dim, n_heads, dropout, fused)
        self.gate_attn = nn.Linear(token_dim, token_dim)
        self.norm_ff = nn.LayerNorm(token_dim)
        self.feed_forward = nn.Sequential(nn.Linear(token_dim, 2 * token_dim), nn.SiLU(),
                                          nn.Linear(2 * token_dim, token_dim))
        self.gate_ff = nn.Linear(token_dim, token_dim)
        for gate in (self.gate_attn, self.gate_ff):
            nn.init.zeros_(gate.weight)
            nn.init.constant_(gate.bias, -2.0)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.norm_attn(tokens)
        tokens = tokens + torch.sigmoid(self.gate_attn(h)) * self.attention(h)
        h = self.norm_ff(tokens)
        return tokens + torch.sigmoid(self.gate_ff(h)) * self.feed_forward(h)
