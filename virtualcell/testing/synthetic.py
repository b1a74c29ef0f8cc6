"""Tiny synthetic tensors for contract tests (<= 200 cells x 50 genes, fully seeded)."""

from __future__ import annotations

import torch

from ..component import Condition

__all__ = ["tiny_expression", "tiny_labels"]


def tiny_expression(n_cells: int = 120, n_genes: int = 30, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """Non-negative log-expression-like data [n_cells, n_genes] with 3 cell types, and gene names."""
    g = torch.Generator().manual_seed(seed)
    types = torch.arange(n_cells) % 3
    profiles = torch.rand(3, n_genes, generator=g) * 3
    x = (profiles[types] + 0.3 * torch.randn(n_cells, n_genes, generator=g)).clamp_min(0)
    return x, [f"gene_{i}" for i in range(n_genes)]


def tiny_labels(n_cells: int = 150, n_features: int = 8, n_contexts: int = 3, seed: int = 0) -> tuple[torch.Tensor, Condition]:
    """Representations z [n, d] in 3 conditions (0 = control) x ``n_contexts`` contexts, with dose and time."""
    g = torch.Generator().manual_seed(seed)
    condition = torch.arange(n_cells) % 3
    context = (torch.arange(n_cells) // 3) % n_contexts
    centres = torch.randn(n_contexts, n_features, generator=g)
    shifts = torch.randn(3, n_features, generator=g)
    shifts[0] = 0
    z = centres[context] + shifts[condition] + 0.2 * torch.randn(n_cells, n_features, generator=g)
    covariates = {"dose": condition.float(), "time": condition.float() * 2}
    return z, Condition(condition, None, context, covariates)
