"""The ``mean-shift`` baseline: add the average difference between the two conditions.

``z' = z + mean(z | target) - mean(z | source)``, both means pooled over the contexts (cell types)
observed in both conditions, so that a held-out context never informs its own prediction. Run in
gene space (``identity`` encoder) it is docs/evaluation.md's additive baseline that models must beat.
"""

from __future__ import annotations

import torch

from ...component import Condition
from ...nn.group_means import GroupPlan, means_from_sums, pooled_mean, repeat_samples
from .group_sums import GroupSumsManipulator, context_condition_plan

__all__ = ["MeanShiftManipulator"]


class MeanShiftManipulator(GroupSumsManipulator):
    """Additive shift by the pooled difference of condition means (contexts seen in both)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("means", torch.zeros(0, 0, 0))   # [K, N, d]
        self.register_buffer("counts", torch.zeros(0, 0))     # [K, N]

    def group_plan(self, labels: Condition, *, n_conditions: int, n_contexts: int, seed: int = 0) -> GroupPlan:
        return context_condition_plan(labels, n_conditions, n_contexts)

    def _fit_sums(self, sums: torch.Tensor, totals: torch.Tensor, labels: Condition) -> None:
        self.means, self.counts = means_from_sums(sums, totals, self.n_conditions)

    def delta(self, source: int, target: int) -> torch.Tensor:
        """The shift [d] from ``source`` to ``target``."""
        shared = (self.counts[:, source] > 0) & (self.counts[:, target] > 0)
        if not bool(shared.any()):
            raise ValueError(f"No context has cells of both condition {source} and condition {target}; "
                             "mean-shift cannot estimate that change.")
        return pooled_mean(self.means, self.counts, target, shared) - pooled_mean(self.means, self.counts, source, shared)

    def _manipulate(self, z, condition, *, n_samples, generator):
        if condition.source is None:
            raise ValueError("mean-shift needs condition.source (the condition each cell is in now).")
        out = z.clone()
        pairs = torch.stack([condition.source, condition.target], 1)
        for source, target in torch.unique(pairs, dim=0).tolist():
            rows = (condition.source == source) & (condition.target == target)
            if source != target:
                out[rows] = z[rows] + self.delta(source, target).to(z.dtype)
        return repeat_samples(out, n_samples)
