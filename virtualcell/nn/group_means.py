"""Per-(context, condition) means of a representation: the statistics additive manipulators use.

Every mean here comes from :func:`group_sums` (weighted float64 sums and totals per group), so a fit that
streams the codes chunk by chunk (adding up the sums) and one that holds them all give the same numbers.
A :class:`GroupPlan` says which group each cell adds to, and with which weight.
"""

from __future__ import annotations

import dataclasses

import torch

__all__ = ["GroupPlan", "group_sums", "group_index", "means_from_sums", "group_means", "pooled_mean",
           "repeat_samples"]


@dataclasses.dataclass(frozen=True)
class GroupPlan:
    """Which group each of ``n`` cells adds its code to: ``group`` [n] integer ids in ``[0, n_groups)``
    (None when ``n_groups`` is 0: nothing to sum) and an optional ``weight`` [n] (e.g. how often scGen's
    balanced resampling picks the cell; None: 1 each)."""

    group: torch.Tensor | None
    n_groups: int
    weight: torch.Tensor | None = None

    def sums(self, z: torch.Tensor, rows: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`group_sums` of ``z`` [m, d], the codes of the cells ``rows`` of the plan (default all)."""
        if self.group is None:
            return z.new_zeros(0, z.shape[1], dtype=torch.float64), z.new_zeros(0, dtype=torch.float64)
        pick = lambda v: None if v is None else v[rows].to(z.device)
        return group_sums(z, pick(self.group), self.n_groups, pick(self.weight))


def group_sums(z: torch.Tensor, group: torch.Tensor, n_groups: int,
               weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted sums of ``z`` [n, d] per group: ``sums`` [G, d] and ``totals`` [G] (the weights' sums), float64.

    ``group`` [n] integer ids in ``[0, n_groups)``; ``weight`` [n] (None: 1 per cell). Chunks of cells add up.
    """
    rows = z.double() if weight is None else z.double() * weight.to(z.device, torch.float64)[:, None]
    sums = torch.zeros(n_groups, z.shape[1], dtype=torch.float64, device=z.device)
    sums.index_add_(0, group, rows)
    if weight is None:
        totals = torch.bincount(group, minlength=n_groups).to(torch.float64)
    else:
        totals = torch.zeros(n_groups, dtype=torch.float64, device=z.device)
        totals.index_add_(0, group, weight.to(z.device, torch.float64))
    return sums, totals


def group_index(condition: torch.Tensor, context: torch.Tensor | None, n_conditions: int) -> torch.Tensor:
    """Group id [n] ``context * n_conditions + condition`` of each cell (``condition`` itself when ``context`` is
    None), in their dtype (int32 ids give int32 groups)."""
    return condition if context is None else context * n_conditions + condition


def means_from_sums(sums: torch.Tensor, totals: torch.Tensor, n_conditions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`group_sums` over :func:`group_index` groups -> ``means`` [K, N, d] float32 (zero where empty)
    and ``counts`` [K, N] float64."""
    means = sums / totals.clamp(min=1)[:, None]
    k = totals.numel() // n_conditions
    return means.view(k, n_conditions, -1).float(), totals.view(k, n_conditions)


def group_means(z: torch.Tensor, condition: torch.Tensor, context: torch.Tensor | None,
                n_conditions: int, n_contexts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Means and counts of ``z`` [n, d] per context and condition.

    Returns ``means`` [K, N, d] (zero where empty) and ``counts`` [K, N] (K = max(n_contexts, 1)).
    """
    n_groups = max(n_contexts, 1) * n_conditions
    return means_from_sums(*group_sums(z, group_index(condition, context, n_conditions), n_groups), n_conditions)


def pooled_mean(means: torch.Tensor, counts: torch.Tensor, condition: int, contexts: torch.Tensor) -> torch.Tensor:
    """Cell-weighted mean [d] of ``condition`` over the boolean mask ``contexts`` [K]."""
    weights = counts[:, condition] * contexts
    return (weights[:, None].to(means.dtype) * means[:, condition]).sum(0) / weights.sum().to(means.dtype)


def repeat_samples(z: torch.Tensor, n_samples: int) -> torch.Tensor:
    """[n, d] -> [n_samples, n, d] (a deterministic prediction's samples are all the same)."""
    return z.unsqueeze(0).expand(n_samples, *z.shape).clone()
