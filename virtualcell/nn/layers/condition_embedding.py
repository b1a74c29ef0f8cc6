"""A learned embedding of the target condition, plus numeric covariates (dose, time)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

__all__ = ["ConditionEmbedding"]


class ConditionEmbedding(nn.Module):
    """``forward(condition_ids [n], covariates {name: [n]}) -> [n, dim]``.

    ``embedding(condition) + Linear(standardised covariates)``. Covariates are standardised with
    the mean / std seen at fit time (buffers ``covariate_mean``, ``covariate_std`` [k]); a covariate
    that a caller omits is filled with its per-condition fit-time mean (buffer
    ``covariate_by_condition`` [n_conditions, k]), so that ``manipulate`` works without them.

    Args:
        n_conditions: number of condition ids.
        dim: embedding size.
        covariate_names: ordered names of the numeric covariates (may be empty).
    """

    def __init__(self, n_conditions: int, dim: int, covariate_names: Sequence[str] = ()) -> None:
        super().__init__()
        self.n_conditions, self.dim = int(n_conditions), int(dim)
        self.covariate_names = list(covariate_names)
        k = len(self.covariate_names)
        self.embedding = nn.Embedding(self.n_conditions, self.dim)
        nn.init.normal_(self.embedding.weight, std=1.0)
        self.covariates = nn.Linear(k, self.dim, bias=False) if k else None
        self.register_buffer("covariate_mean", torch.zeros(k))
        self.register_buffer("covariate_std", torch.ones(k))
        self.register_buffer("covariate_by_condition", torch.zeros(self.n_conditions, k))

    @torch.no_grad()
    def fit_covariates(self, condition: torch.Tensor, covariates: Mapping[str, torch.Tensor]) -> None:
        """Record covariate statistics from training cells (condition [n], covariates {name: [n]})."""
        if not self.covariate_names:
            return
        values = self._stack(covariates, condition, fill=False).double()     # [n, k]
        self.covariate_mean = values.mean(0).float()
        self.covariate_std = values.std(0, unbiased=False).clamp_min(1e-6).float()
        sums = torch.zeros(self.n_conditions, values.shape[1], dtype=torch.float64, device=values.device)
        sums.index_add_(0, condition, values)
        counts = torch.bincount(condition, minlength=self.n_conditions).clamp_min(1)
        self.covariate_by_condition = (sums / counts[:, None]).float()

    def _stack(self, covariates: Mapping[str, torch.Tensor], condition: torch.Tensor,
               fill: bool = True) -> torch.Tensor:
        columns = []
        for j, name in enumerate(self.covariate_names):
            if name in covariates:
                columns.append(covariates[name].to(self.embedding.weight.device, torch.float32))
            elif fill:
                columns.append(self.covariate_by_condition[condition, j])
            else:
                raise ValueError(f"covariate {name!r} is missing; this model was built with covariates "
                                 f"{self.covariate_names}. Pass every one of them when fitting.")
        return torch.stack(columns, 1)

    def forward(self, condition: torch.Tensor, covariates: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        out = self.embedding(condition)
        if self.covariates is not None:
            values = (self._stack(covariates or {}, condition) - self.covariate_mean) / self.covariate_std
            out = out + self.covariates(values)
        return out
