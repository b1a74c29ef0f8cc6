"""Batches of conditional GAN training: real cells matched by (group, condition), the losses' small
helpers, and the validation score that drives early stopping."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from ..nn.layers.cell_groups import paired_groups

__all__ = ["GroupSampler", "scaled_l1", "masked_mean", "validation"]


class GroupSampler:
    """Random training rows by (group, condition): ``sample(groups, conditions) -> (rows, matched)``."""

    def __init__(self, rows: torch.Tensor, condition: torch.Tensor, group: torch.Tensor, n_conditions: int,
                 min_cells: int, min_share: float = 0.0) -> None:
        self.n_conditions = n_conditions
        n_groups = int(group.max()) + 1
        key = group[rows] * n_conditions + condition[rows]
        self.sorted_rows = rows[torch.argsort(key, stable=True)]
        self.counts = torch.bincount(key, minlength=n_groups * n_conditions)
        self.offsets = torch.cumsum(self.counts, 0) - self.counts
        self.matched = paired_groups(self.counts.view(n_groups, n_conditions), min_cells=min_cells,
                                     min_share=min_share).flatten()
        per_condition = torch.bincount(condition[rows], minlength=n_conditions)
        self.present = torch.nonzero(per_condition > 0).flatten()
        self.any_rows = rows[torch.argsort(condition[rows], stable=True)]
        self.any_counts = per_condition
        self.any_offsets = torch.cumsum(per_condition, 0) - per_condition

    def sample(self, groups: torch.Tensor, conditions: torch.Tensor, generator: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """A real row of each ``conditions[i]`` from ``groups[i]`` where that group has enough of
        them (``matched[i]``), else from any group."""
        key = groups * self.n_conditions + conditions
        matched = self.matched[key]
        counts = torch.where(matched, self.counts[key], self.any_counts[conditions])
        u = torch.rand(conditions.shape[0], generator=generator, device=conditions.device)
        pick = (u * counts).long().clamp_max(counts - 1)
        in_group = self.sorted_rows[(self.offsets[key] + pick).clamp_max(self.sorted_rows.numel() - 1)]
        anywhere = self.any_rows[(self.any_offsets[conditions] + pick).clamp_max(self.any_rows.numel() - 1)]
        rows = torch.where(matched, in_group, anywhere)
        return rows, matched

    def other_targets(self, source: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """For each row a condition != its own, uniformly among the conditions that have cells."""
        k = self.present.numel()
        position = torch.searchsorted(self.present, source)               # index of source in present
        shift = torch.randint(1, k, source.shape, generator=generator, device=source.device)
        return self.present[(position + shift) % k]


def scaled_l1(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (a.float() - b.float()).abs().mean() / scale


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp_min(1)


def validation(generator: nn.Module, x: torch.Tensor, condition: torch.Tensor, groups: torch.Tensor,
                covariates: Mapping[str, torch.Tensor], rows: torch.Tensor, sampler: GroupSampler,
                index: torch.Tensor, scale: torch.Tensor) -> Callable[[], dict[str, float]]:
    """``validate() -> {val_identity, val_shift, val_loss}`` on the validation rows (no grad), over ``index``."""
    xv, cv, gv = x[rows], condition[rows], groups[rows]
    xv_k = xv.index_select(1, index)
    covv = {k: v[rows] for k, v in covariates.items()}
    pairs = []                                    # (source rows in validation, target, mean of real target cells)
    for b in sampler.present.tolist():
        for k in torch.unique(gv).tolist():
            key = k * sampler.n_conditions + b
            moving = torch.nonzero((cv != b) & (gv == k)).flatten()
            if moving.numel() == 0 or not bool(sampler.matched[key]):
                continue
            real = sampler.sorted_rows[sampler.offsets[key]: sampler.offsets[key] + sampler.counts[key]]
            pairs.append((moving, b, x[real].index_select(1, index).float().mean(0)))

    def validate() -> dict[str, float]:
        same = generator(xv, cv, cv, covv).index_select(1, index)
        identity = float(scaled_l1(same, xv_k, scale))
        total, weight = 0.0, 0
        for moving, b, real_mean in pairs:
            target = torch.full((moving.numel(),), b, device=x.device, dtype=torch.long)
            moved = generator(xv[moving], cv[moving], target, {}).index_select(1, index)
            total += float(((moved.float().mean(0) - real_mean) ** 2).mean() / scale**2) * moving.numel()
            weight += moving.numel()
        shift = total / max(weight, 1)
        return {"val_identity": identity, "val_shift": shift, "val_loss": identity + shift}

    return validate
