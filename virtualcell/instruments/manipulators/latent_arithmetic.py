"""Latent arithmetic (scGen, Lotfollahi et al. 2019): ``z' = z + mean_b(target) - mean_b(source)``.

``mean_b`` is scGen's balanced mean: within each condition, every context (cell type) is resampled
with replacement to the size of the largest one, so that abundant cell types do not dominate the
direction of the shift. scGen's own balancing is unseeded; here it takes ``seed``. With
``balance=False`` the means are the plain per-condition means of all cells (no resampling).
"""

from __future__ import annotations

from typing import Any

import torch

from ...component import Condition, Manipulator
from ...nn.group_means import repeat_samples

__all__ = ["LatentArithmeticManipulator", "balanced_means", "plain_means"]


def balanced_means(z: torch.Tensor, condition: torch.Tensor, context: torch.Tensor | None, n_conditions: int,
                   generator: torch.Generator) -> torch.Tensor:
    """Per-condition mean [N, d] after resampling each context to equal size (with replacement)."""
    means = torch.full((n_conditions, z.shape[1]), float("nan"), device=z.device)
    context = torch.zeros_like(condition) if context is None else context
    for c in range(n_conditions):
        rows = torch.nonzero(condition == c).flatten()
        if rows.numel() == 0:
            continue
        groups = [rows[context[rows] == k] for k in torch.unique(context[rows]).tolist()]
        size = max(g.numel() for g in groups)
        picks = [g[torch.randint(g.numel(), (size,), generator=generator, device="cpu").to(g.device)] for g in groups]
        means[c] = z[torch.cat(picks)].double().mean(0).float()
    return means


def plain_means(z: torch.Tensor, condition: torch.Tensor, n_conditions: int) -> torch.Tensor:
    """Per-condition mean [N, d] of every cell (no resampling); NaN rows for conditions without cells."""
    sums = torch.zeros(n_conditions, z.shape[1], dtype=torch.float64, device=z.device)
    sums.index_add_(0, condition.long(), z.double())
    counts = torch.bincount(condition.long(), minlength=n_conditions).to(torch.float64)
    means = sums / counts[:, None]            # 0 / 0 = NaN marks a condition without cells
    return means.float()


class LatentArithmeticManipulator(Manipulator):
    """scGen's vector arithmetic in any representation, with seeded balancing across contexts.

    Args:
        balance: resample contexts to equal size before averaging (scGen); False uses plain means.
    """

    def __init__(self, balance: bool = True) -> None:
        super().__init__()
        self.register_buffer("condition_means", torch.zeros(0, 0))  # [N, d]

    def _fit(self, z: torch.Tensor, labels: Condition, *, seed: int = 0, **kwargs: Any) -> None:
        if not self.config["balance"]:
            self.condition_means = plain_means(z, labels.target, self.n_conditions)
            return
        generator = torch.Generator().manual_seed(seed)
        self.condition_means = balanced_means(z, labels.target, labels.context, self.n_conditions, generator)

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
