"""The ``control`` baseline: predict no change (``z' = z``)."""

from __future__ import annotations

import torch

from ...component import Condition
from ...nn.group_means import GroupPlan, repeat_samples
from .group_sums import GroupSumsManipulator

__all__ = ["ControlManipulator"]


class ControlManipulator(GroupSumsManipulator):
    """Predicts that the target condition looks exactly like the source: the floor every method must beat."""

    def __init__(self) -> None:
        super().__init__()

    def group_plan(self, labels: Condition, *, n_conditions: int, n_contexts: int, seed: int = 0) -> GroupPlan:
        return GroupPlan(None, 0)   # needs nothing of the codes

    def _fit_sums(self, sums: torch.Tensor, totals: torch.Tensor, labels: Condition) -> None:
        pass

    def _manipulate(self, z, condition, *, n_samples, generator):
        return repeat_samples(z, n_samples)
