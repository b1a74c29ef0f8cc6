"""Leave-one-context-out choice between two estimates of a held-out context's mean response.

For every ordered pair of conditions ``(s, t)`` and every training context ``k`` observed in both
(when at least two are), the mean response of ``k`` (``mean_k(t) - mean_k(s)``) is predicted from
the other contexts only, by

- ``"balanced"``: latent arithmetic's balanced means (scGen), recomputed without ``k``'s ``t`` cells
  (its ``s`` cells stay, as a held-out context's control cells do);
- ``"pooled"``: mean-shift's cell-weighted means over the other contexts seen in both conditions,

and scored by the squared error (summed over dimensions). Only training cells are used.
"""

from __future__ import annotations

import torch

from ...nn.group_means import group_means, pooled_mean
from .latent_arithmetic import balanced_means

__all__ = ["loco_mean_errors", "choose_mean"]


def loco_mean_errors(z: torch.Tensor, condition: torch.Tensor, context: torch.Tensor, n_conditions: int,
                     seed: int = 0) -> dict[str, list[float]]:
    """Squared errors of the ``"balanced"`` and ``"pooled"`` mean responses of each left-out context.

    ``z`` [n, d], ``condition`` and ``context`` [n] long. Returns ``{estimate: [error, ...]}``, one
    error per (pair, left-out context); empty lists when no pair is seen in two contexts.
    """
    n_contexts = int(context.max()) + 1
    means, counts = group_means(z, condition, context, n_conditions, n_contexts)
    generator = torch.Generator().manual_seed(seed)
    errors: dict[str, list[float]] = {"balanced": [], "pooled": []}
    for s in range(n_conditions):
        for t in range(n_conditions):
            shared = (counts[:, s] > 0) & (counts[:, t] > 0)
            if s == t or int(shared.sum()) < 2:
                continue
            for k in torch.nonzero(shared).flatten().tolist():
                truth = (means[k, t] - means[k, s]).double()
                others = shared.clone()
                others[k] = False
                pooled = pooled_mean(means, counts, t, others) - pooled_mean(means, counts, s, others)
                keep = ~((context == k) & (condition == t))
                balanced_all = balanced_means(z[keep], condition[keep], context[keep], n_conditions, generator)
                balanced = balanced_all[t] - balanced_all[s]
                errors["pooled"].append(float((pooled.double() - truth).pow(2).sum()))
                errors["balanced"].append(float((balanced.double() - truth).pow(2).sum()))
    return errors


def choose_mean(errors: dict[str, list[float]], fallback: str = "balanced") -> str:
    """The estimate with the lower mean error (``fallback`` when there is nothing to compare, or a tie)."""
    if not errors["balanced"]:
        return fallback
    mean = {name: sum(values) / len(values) for name, values in errors.items()}
    other = "pooled" if fallback == "balanced" else "balanced"
    return other if mean[other] < mean[fallback] else fallback
