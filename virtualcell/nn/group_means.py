"""Per-(context, condition) means of a representation: the statistics additive manipulators use."""

from __future__ import annotations

import torch

__all__ = ["group_means", "pooled_mean", "repeat_samples"]


def group_means(z: torch.Tensor, condition: torch.Tensor, context: torch.Tensor | None,
                n_conditions: int, n_contexts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Means and counts of ``z`` [n, d] per context and condition.

    Returns ``means`` [K, N, d] (zero where empty) and ``counts`` [K, N] (K = max(n_contexts, 1)).
    """
    k = max(n_contexts, 1)
    context = torch.zeros_like(condition) if context is None else context
    group = context.long() * n_conditions + condition.long()
    sums = torch.zeros(k * n_conditions, z.shape[1], dtype=torch.float64, device=z.device)
    sums.index_add_(0, group, z.double())
    counts = torch.bincount(group, minlength=k * n_conditions).to(torch.float64)
    means = sums / counts.clamp(min=1)[:, None]
    return means.view(k, n_conditions, -1).float(), counts.view(k, n_conditions)


def pooled_mean(means: torch.Tensor, counts: torch.Tensor, condition: int, contexts: torch.Tensor) -> torch.Tensor:
    """Cell-weighted mean [d] of ``condition`` over the boolean mask ``contexts`` [K]."""
    weights = counts[:, condition] * contexts
    return (weights[:, None].to(means.dtype) * means[:, condition]).sum(0) / weights.sum().to(means.dtype)


def repeat_samples(z: torch.Tensor, n_samples: int) -> torch.Tensor:
    """[n, d] -> [n_samples, n, d] (a deterministic prediction's samples are all the same)."""
    return z.unsqueeze(0).expand(n_samples, *z.shape).clone()
