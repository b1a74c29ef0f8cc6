"""Manipulators whose fit needs only per-group (weighted) sums of the codes, so codes can be streamed.

A subclass implements ``group_plan`` (which group each cell adds to, with which weight: a
:class:`~virtualcell.nn.group_means.GroupPlan`) and ``_fit_sums`` (the fit from ``sums`` [G, d] and
``totals`` [G]). ``fit(z, labels)`` sums the codes in memory over the plan; :meth:`fit_sums` takes sums
added up chunk by chunk (a fit from disk, ``pipelines/fit_from_disk.py``): one code path, the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ...component import Condition, Manipulator
from ...nn.group_means import GroupPlan, group_index

__all__ = ["GroupSumsManipulator", "context_condition_plan"]


def context_condition_plan(labels: Condition, n_conditions: int, n_contexts: int) -> GroupPlan:
    """One group per (context, condition): ``group_index`` ids, K = max(n_contexts, 1) contexts of N conditions
    (the groups of ``group_means``; ``means_from_sums`` turns their sums into means [K, N, d])."""
    return GroupPlan(group_index(labels.target, labels.context, n_conditions), max(n_contexts, 1) * n_conditions)


class GroupSumsManipulator(Manipulator):
    """Base of manipulators fitted on per-group sums of the codes (``group_plan`` + ``_fit_sums``)."""

    def group_plan(self, labels: Condition, *, n_conditions: int, n_contexts: int, seed: int = 0) -> GroupPlan:
        raise NotImplementedError

    def fit_sums(self, sums: torch.Tensor, totals: torch.Tensor, labels: Condition, *, n_conditions: int,
                 n_contexts: int, features: Sequence[str] | None = None) -> "GroupSumsManipulator":
        """``fit`` from ``sums`` [G, d] and ``totals`` [G] (float64) of every cell's code over the groups of
        ``group_plan(labels, ...)`` (e.g. ``GroupPlan.sums`` of each chunk of codes, added up); ``labels`` [n]."""
        self._record(sums, labels, n_conditions, n_contexts, features)
        self._fit_sums(sums, totals, labels)
        self.is_fitted = True
        return self

    def _fit(self, z: torch.Tensor, labels: Condition, *, seed: int, progress: bool, **kwargs: Any) -> None:
        plan = self.group_plan(labels, n_conditions=self.n_conditions, n_contexts=self.n_contexts, seed=seed)
        self._fit_sums(*plan.sums(z), labels)

    def _fit_sums(self, sums: torch.Tensor, totals: torch.Tensor, labels: Condition) -> None:
        raise NotImplementedError
