"""The ``mean-perturbation`` baseline: every perturbation gets the average response of the training targets.

Fit: for each perturbation (condition id ``t != control``, ``control`` = id 0, the pipeline's control label)
seen at fit, its response is ``mean(z | t) - mean(z | control)``; the shift is the unweighted mean of those
responses over targets. With contexts given, this is done per context (only targets and control cells of
that context) and also pooled (each target's means cell-weighted over the contexts that have both it and
control cells); without contexts, pooled only.

Manipulate: ``z' = z + effect(target) - effect(source)`` where ``effect(control) = 0`` and every other
condition id has the same effect: the shift of the cell's context when that context had one at fit, the
pooled shift otherwise. So a target id with no cells at fit (a perturbation never seen; fit with
``n_conditions`` covering it) gets the same prediction as any other: it is the "predict the average
perturbation" baseline that a method for unseen perturbations must beat (PERT task, docs/evaluation.md).
"""

from __future__ import annotations

import torch

from ...component import Condition
from ...nn.group_means import GroupPlan, means_from_sums, repeat_samples
from .group_sums import GroupSumsManipulator, context_condition_plan

__all__ = ["MeanPerturbationManipulator"]

CONTROL = 0


class MeanPerturbationManipulator(GroupSumsManipulator):
    """Adds the mean response over all training perturbations, whatever the target (control = id 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("context_shift", torch.zeros(0, 0))   # [K, d]
        self.register_buffer("has_shift", torch.zeros(0, dtype=torch.bool))  # [K]
        self.register_buffer("pooled_shift", torch.zeros(0))      # [d]

    def group_plan(self, labels: Condition, *, n_conditions: int, n_contexts: int, seed: int = 0) -> GroupPlan:
        return context_condition_plan(labels, n_conditions, n_contexts)

    def _fit_sums(self, sums: torch.Tensor, totals: torch.Tensor, labels: Condition) -> None:
        means, counts = means_from_sums(sums, totals, self.n_conditions)
        self._fit_means(means.double(), counts.double())

    def _fit_means(self, means: torch.Tensor, counts: torch.Tensor) -> None:
        """The shifts from the per-(context, condition) ``means`` [K, N, d] and ``counts`` [K, N] (float64)."""
        present = counts > 0
        perturbed = present.clone()
        perturbed[:, CONTROL] = False
        usable = perturbed & present[:, CONTROL:CONTROL + 1]                  # [K, N] target and control both seen
        if not bool(usable.any()):
            raise ValueError("mean-perturbation needs cells of condition 0 (control) and of at least one other "
                             "condition in the same context; found none.")
        response = means - means[:, CONTROL:CONTROL + 1]                       # [K, N, d]
        weights = usable.double()
        per_context = (weights[..., None] * response).sum(1) / weights.sum(1).clamp(min=1)[:, None]
        # pooled: each target's cell-weighted means over the contexts holding it and control
        target_w = counts * usable                                            # [K, N]
        control_w = counts[:, CONTROL:CONTROL + 1] * usable                   # [K, N] control cells of those contexts
        target_mean = (target_w[..., None] * means).sum(0) / target_w.sum(0).clamp(min=1)[:, None]
        control_mean = (control_w[..., None] * means[:, CONTROL:CONTROL + 1]).sum(0) / control_w.sum(0).clamp(min=1)[:, None]
        seen = usable.any(0)                                                  # [N]
        self.pooled_shift = (target_mean - control_mean)[seen].mean(0).float()
        self.context_shift = per_context.float()
        self.has_shift = usable.any(1)

    def shift(self, context: int | None = None) -> torch.Tensor:
        """The shift [d] added to a control cell of ``context`` (pooled when None or not seen at fit)."""
        self._check_fitted()
        if context is not None and 0 <= context < len(self.has_shift) and bool(self.has_shift[context]):
            return self.context_shift[context]
        return self.pooled_shift

    def _manipulate(self, z, condition, *, n_samples, generator):
        source = condition.source if condition.source is not None else torch.full_like(condition.target, CONTROL)
        effect = torch.zeros_like(z)
        known = torch.zeros(len(z), dtype=torch.bool, device=z.device)
        if condition.context is not None and self.n_contexts:
            ctx = condition.context
            known = (ctx >= 0) & (ctx < len(self.has_shift))
            known[known.clone()] = self.has_shift[ctx[known]]
            effect[known] = self.context_shift[ctx[known]].to(z.dtype)
        effect[~known] = self.pooled_shift.to(z.dtype)
        sign = (condition.target != CONTROL).to(z.dtype) - (source != CONTROL).to(z.dtype)   # [n] in {-1, 0, 1}
        return repeat_samples(z + sign[:, None] * effect, n_samples)
