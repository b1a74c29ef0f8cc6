"""Cell groups for matched critic batches, and condition shifts averaged over groups.

A GAN trained on unpaired cells compares moved cells with real ones; when the two conditions hold
different cell types (a held-out cell type exists only among the controls), it must compare like
with like. The groups are the contexts (cell types) when they are known, else unsupervised
pseudo-contexts from k-means on features the condition barely moves.
"""

from __future__ import annotations

import torch

from ...execution import seeded
from ..group_means import group_means

__all__ = ["condition_offsets", "pseudo_contexts", "feature_spread", "paired_groups"]


def feature_spread(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and std [d] of ``z`` [n, d], the std floored at a quarter of its average."""
    mean, std = z.float().mean(0), z.float().std(0, unbiased=False)
    return mean, std.clamp_min(0.25 * float(std.mean()) + 1e-6)


def paired_groups(counts: torch.Tensor, *, min_cells: int = 1, min_share: float = 0.0) -> torch.Tensor:
    """Which (group, condition) cells stand for the condition in that group: bool [K, N].

    ``counts`` [K, N]: cells per group and condition. A pair qualifies with at least ``min_cells``
    cells whose share of the group is at least ``min_share`` times the condition's share of all
    cells. Unsupervised groups need the share rule: a held-out cell type's controls form a cluster
    with a few stray perturbed cells of other types, and moving the controls to look like those
    strays (or averaging their shift into the condition's) pulls the held-out type off.
    """
    counts = counts.double()
    enough = counts >= min_cells
    if min_share > 0:
        share = counts / counts.sum(1, keepdim=True).clamp_min(1)                     # [K, N]
        overall = counts.sum(0) / counts.sum().clamp_min(1)                            # [N]
        enough &= share >= min_share * overall
    return enough


def condition_offsets(z: torch.Tensor, condition: torch.Tensor, context: torch.Tensor | None,
                      n_conditions: int, *, balanced: bool = False, min_share: float = 0.0, n_iter: int = 200,
                      tol: float = 1e-6) -> torch.Tensor:
    """Per-condition locations [n_conditions, d] whose differences are the average condition shifts.

    Fits the additive two-way model ``mean[k, c] ~ level[k] + offset[c]`` to the per-context
    condition means by weighted least squares (alternating updates), over the contexts that hold
    the condition and at least one other; the weights are cells (or equal with ``balanced``, as
    scGen balances cell types). With two conditions this is the average, over the paired contexts,
    of each condition's mean minus the context's centre; with more (time points, doses, targets)
    it stays unbiased when contexts hold different subsets of the conditions, where centring each
    context on its own conditions would not. Without contexts: the pooled condition means, centred.
    A condition with no paired cells gets zeros. ``min_share``: a context holds a condition only
    with that share of it (see :func:`paired_groups`).
    """
    n_contexts = int(context.max()) + 1 if context is not None else 1
    means, counts = group_means(z, condition, context, n_conditions, n_contexts)      # [K, N, d], [K, N]
    means = means.double()
    present = paired_groups(counts, min_share=min_share)
    informative = present & (present.sum(1, keepdim=True) >= 2)
    weights = (informative.double() if balanced else counts.double() * informative)[..., None]   # [K, N, 1]
    per_context, per_condition = weights.sum(1).clamp_min(1e-12), weights.sum(0).clamp_min(1e-12)
    offsets = torch.zeros(means.shape[1:], dtype=means.dtype, device=means.device)               # [N, d]
    for _ in range(n_iter):
        level = ((means - offsets) * weights).sum(1) / per_context                                # [K, d]
        updated = ((means - level[:, None]) * weights).sum(0) / per_condition
        change = float((updated - offsets).abs().max()) if updated.numel() else 0.0
        offsets = updated
        if change < tol:
            break
    return offsets.float()


def _kmeans(points: torch.Tensor, k: int, generator: torch.Generator, n_iter: int) -> tuple[torch.Tensor, float]:
    """One k-means run (k-means++ start, Lloyd updates) of ``points`` [n, q]: (centres [k, q], inertia)."""
    centres = points[torch.randint(points.shape[0], (1,), generator=generator, device=points.device)]
    for _ in range(1, k):                                                                   # k-means++
        distance = torch.cdist(points, centres).min(1).values.square()
        probabilities = distance / distance.sum() if float(distance.sum()) > 0 else torch.ones_like(distance)
        centres = torch.cat([centres, points[torch.multinomial(probabilities, 1, generator=generator)]])
    for _ in range(n_iter):                                                                 # Lloyd
        labels = torch.cdist(points, centres).argmin(1)
        sums = torch.zeros_like(centres).index_add_(0, labels, points)
        counts = torch.bincount(labels, minlength=k)
        moved = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)
        if torch.allclose(moved, centres):
            break
        centres = moved
    return centres, float(torch.cdist(points, centres).min(1).values.square().sum())


def pseudo_contexts(z: torch.Tensor, condition: torch.Tensor, n_clusters: int, *, seed: int = 0,
                    n_components: int = 20, max_condition_share: float = 0.05, reference: int | None = 0,
                    n_init: int = 1, n_iter: int = 50) -> torch.Tensor:
    """Unsupervised stand-ins for cell types [n]: k-means (k-means++ start) of ``z`` [n, d].

    Cells must cluster by what they are, not by their condition, so only features whose
    variance the condition explains less than ``max_condition_share`` of (eta squared; at least
    the half least affected) are used, with each condition's mean removed; they are standardised
    and projected on ``n_components`` principal axes. The centroids are fitted on the cells of
    the ``reference`` condition (the controls) and every cell joins its nearest one: a cell type
    whose response is strong and specific (monocytes under interferon) would otherwise split into a
    control and a perturbed cluster, neither of which pairs the conditions. None: all cells.
    The best (lowest inertia) of ``n_init`` k-means runs is kept. Seeded: same inputs and seed,
    same clusters.
    """
    n_conditions = int(condition.max()) + 1
    z = z.float()
    means, counts = group_means(z, condition, None, n_conditions, 1)
    weights = (counts[0] / counts[0].sum()).float()
    between = (weights[:, None] * (means[0] - z.mean(0)) ** 2).sum(0)
    share = between / z.var(0, unbiased=False).clamp_min(1e-12)                            # eta^2 [d]
    keep = share < max_condition_share
    if int(keep.sum()) < max(2, z.shape[1] // 2):
        keep = share <= share.median()
    z = (z - condition_offsets(z, condition, None, n_conditions)[condition])[:, keep]
    mean, std = feature_spread(z)
    z = (z - mean) / std
    with seeded(seed, z.device):
        u, s, _ = torch.svd_lowrank(z, q=min(n_components, *z.shape), niter=4)
    everyone = u * s                                                                        # [n, q]
    points = everyone[condition == reference] if reference is not None else everyone
    if points.shape[0] == 0:
        raise ValueError(f"No cells of the reference condition {reference} to fit the clusters on.")
    k = max(1, min(int(n_clusters), points.shape[0]))
    generator = torch.Generator(device=points.device).manual_seed(seed)
    runs = [_kmeans(points, k, generator, n_iter) for _ in range(max(1, n_init))]
    centres = min(runs, key=lambda run: run[1])[0]                                          # lowest inertia
    return torch.cdist(everyone, centres).argmin(1)
