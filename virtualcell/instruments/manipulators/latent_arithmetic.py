"""Latent arithmetic (scGen, Lotfollahi et al. 2019): ``z' = z + mean_b(target) - mean_b(source)``.

``mean_b`` is scGen's balanced mean: within each condition, every context (cell type) is resampled
with replacement to the size of the largest one, so that abundant cell types do not dominate the
direction of the shift. scGen's own balancing is unseeded; here it takes ``seed``. With
``balance=False`` the means are the plain per-condition means of all cells (no resampling).
"""

from __future__ import annotations

import torch

from ...component import Condition
from ...nn.group_means import GroupPlan, repeat_samples
from .group_sums import GroupSumsManipulator

__all__ = ["LatentArithmeticManipulator", "balanced_means", "balanced_weights", "plain_means"]


def balanced_weights(condition: torch.Tensor, context: torch.Tensor | None, n_conditions: int,
                     generator: torch.Generator) -> torch.Tensor:
    """How often scGen's balanced resampling picks each cell, [n] int32: within each condition, every context
    is resampled with replacement to the size of the largest one (one ``randint`` per context, in order)."""
    weight = torch.zeros(condition.shape[0], dtype=torch.int32, device=condition.device)
    for c in range(n_conditions):
        rows = torch.nonzero(condition == c).flatten().to(condition.dtype)   # int32 ids: int32 rows
        if rows.numel() == 0:
            continue
        if context is None:
            groups = [rows]
        else:
            of_rows = context[rows]
            groups = [rows[of_rows == k] for k in torch.unique(of_rows).tolist()]
            del of_rows
        size = max(g.numel() for g in groups)
        for g in groups:
            picks = torch.randint(g.numel(), (size,), generator=generator, device="cpu").to(g.device)
            weight[g] = torch.bincount(picks, minlength=g.numel()).to(torch.int32)
    return weight


def _condition_means(sums: torch.Tensor, totals: torch.Tensor) -> torch.Tensor:
    """Per-condition means [N, d] from the sums over condition groups; 0 / 0 = NaN marks a condition without cells."""
    return (sums / totals[:, None]).float()


def balanced_means(z: torch.Tensor, condition: torch.Tensor, context: torch.Tensor | None, n_conditions: int,
                   generator: torch.Generator) -> torch.Tensor:
    """Per-condition mean [N, d] after resampling each context to equal size (with replacement)."""
    plan = GroupPlan(condition, n_conditions, balanced_weights(condition, context, n_conditions, generator))
    return _condition_means(*plan.sums(z))


def plain_means(z: torch.Tensor, condition: torch.Tensor, n_conditions: int) -> torch.Tensor:
    """Per-condition mean [N, d] of every cell (no resampling); NaN rows for conditions without cells."""
    return _condition_means(*GroupPlan(condition, n_conditions).sums(z))


class LatentArithmeticManipulator(GroupSumsManipulator):
    """scGen's vector arithmetic in any representation, with seeded balancing across contexts.

    Args:
        balance: resample contexts to equal size before averaging (scGen); False uses plain means.
    """

    def __init__(self, balance: bool = True) -> None:
        super().__init__()
        self.register_buffer("condition_means", torch.zeros(0, 0))  # [N, d]

    def group_plan(self, labels: Condition, *, n_conditions: int, n_contexts: int, seed: int = 0) -> GroupPlan:
        """One group per condition; balanced: each cell weighted by how often the resampling picks it."""
        if not self.config["balance"]:
            return GroupPlan(labels.target, n_conditions)
        generator = torch.Generator().manual_seed(seed)
        return GroupPlan(labels.target, n_conditions, balanced_weights(labels.target, labels.context, n_conditions,
                                                                       generator))

    def _fit_sums(self, sums: torch.Tensor, totals: torch.Tensor, labels: Condition) -> None:
        self.condition_means = _condition_means(sums, totals)

    def delta(self, source: int, target: int) -> torch.Tensor:
        """The latent shift [d] from ``source`` to ``target``."""
        return self._deltas(torch.tensor([source]), torch.tensor([target]))[0]

    def _deltas(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        delta = self.condition_means[target] - self.condition_means[source]
        bad = torch.isnan(delta).any(1)
        if bad.any():
            ids = sorted(set(target[bad].tolist()) | set(source[bad].tolist()))
            raise ValueError(f"Condition id(s) among {ids} had no cells when the manipulator was fitted.")
        return delta

    def _manipulate(self, z, condition, *, n_samples, generator):
        if condition.source is None:
            raise ValueError("latent-arithmetic needs condition.source (the condition each cell is in now).")
        out = z + self._deltas(condition.source, condition.target).to(z.dtype)
        return repeat_samples(out, n_samples)
