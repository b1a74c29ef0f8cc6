"""Random effects of an unseen context's response, in the pipeline's output (gene) space.

A prediction for a context (cell type) whose response ``source -> target`` was never observed is
unsure about more than the model's own spread: that context's response differs from the training
contexts' responses by an amount the model cannot know. The training contexts' observed responses
(per-(context, condition) means of the preprocessed expression, kept by ``PerturbationPipeline.fit``)
give its scale: each sample of such a prediction gets one random effect, the same for all its
cells. Measured in gene space because one latent shift decodes to different gene responses per
cell type, so the latent spread of responses is far narrower than the gene-space one (issue #5).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..component import Condition

__all__ = ["sample_context_effects", "context_effects", "observed_responses", "pipeline_context_effects"]


def sample_context_effects(means: torch.Tensor, counts: torch.Tensor, source: int, target: int, n_samples: int,
                           generator: torch.Generator) -> torch.Tensor:
    """Random effects [n_samples, d] for the response ``source -> target`` of a context not seen in it.

    ``means`` [K, N, d] and ``counts`` [K, N] are per-(context, condition) means and sizes. The
    responses ``r_k = means[k, target] - means[k, source]`` of the K contexts observed in both are
    treated as draws from a population of responses; a new context's response deviates from their
    mean as a multivariate Student t with K - 1 degrees of freedom and scale
    ``(1 + 1/K) * cov(r)``. Fewer than 2 such contexts: zeros (no information).
    """
    both = (counts[:, source] > 0) & (counts[:, target] > 0)
    k, d = int(both.sum()), means.shape[-1]
    if k < 2:
        return torch.zeros(n_samples, d)
    responses = (means[both, target] - means[both, source]).double().cpu()
    centred = (responses - responses.mean(0)) / (k - 1) ** 0.5              # centred.T @ centred = cov(r)
    gaussian = torch.randn(n_samples, k, generator=generator, dtype=torch.float64) @ centred
    chi2 = torch.randn(n_samples, k - 1, generator=generator, dtype=torch.float64).pow(2).sum(1) / (k - 1)
    return (gaussian * ((1 + 1 / k) / chi2).sqrt()[:, None]).float()


def observed_responses(counts: torch.Tensor, source: torch.Tensor, target: torch.Tensor,
                       context: torch.Tensor | None) -> torch.Tensor:
    """Whether each cell's context had cells in both its source and its target condition at fit: [n] bool.

    ``counts`` [K, N]; ``source``, ``target`` [n] condition ids; ``context`` [n] context ids (a
    negative id, or None for all cells, is a context unknown to the fit).
    """
    if context is None:
        return torch.zeros(len(target), dtype=torch.bool)
    context = context.long().cpu()
    known = (context >= 0) & (context < counts.shape[0])
    k = context.clamp(0, counts.shape[0] - 1)
    return known & (counts[k, source.long().cpu()] > 0) & (counts[k, target.long().cpu()] > 0)


def context_effects(means: torch.Tensor, counts: torch.Tensor, source: torch.Tensor, target: torch.Tensor,
                    context: torch.Tensor | None, n_samples: int, generator: torch.Generator) -> torch.Tensor:
    """Per-sample random effects [S, n, G] (CPU, float32) for cells whose response was not observed at fit.

    ``means`` [K, N, G] and ``counts`` [K, N] per (context, condition); ``source``, ``target`` [n]
    condition ids and ``context`` [n] context ids per cell (negative or None: unknown). Cells whose
    context's response ``source -> target`` was observed, and cells with ``source == target``, get
    zeros. The others get one :func:`sample_context_effects` draw per sample for each group of cells
    sharing (context, source, target), drawn in sorted group order from ``generator`` (CPU).
    """
    n, g = len(target), means.shape[-1]
    if len(source) != n or (context is not None and len(context) != n):
        raise ValueError(f"source, target and context need one id per cell; got {len(source)}, {n} and "
                         f"{None if context is None else len(context)}.")
    effects = torch.zeros(n_samples, n, g)
    source, target = source.long().cpu(), target.long().cpu()
    needed = ~observed_responses(counts, source, target, context) & (source != target)
    if not needed.any():
        return effects
    group_context = torch.full_like(target, -1) if context is None else context.long().cpu().clamp_min(-1)
    keys = torch.stack([group_context, source, target], 1)
    for key in torch.unique(keys[needed], dim=0):
        rows = needed & (keys == key).all(1)
        draw = sample_context_effects(means, counts, int(key[1]), int(key[2]), n_samples, generator)
        effects[:, rows] = draw[:, None, :]
    return effects


def pipeline_context_effects(response_means: tuple[torch.Tensor, torch.Tensor], outputs: Sequence[str],
                             genes: Sequence[str], condition: Condition, contexts: torch.Tensor | None,
                             n_samples: int, seed: int) -> torch.Tensor:
    """A pipeline's random effects [S, n, genes] (CPU; zeros for observed responses), drawn from ``seed``.

    ``response_means`` are the fitted ([K, N, G] means, [K, N] counts); ``outputs`` the decoder's
    features, which must be the fitted ``genes``; ``contexts`` [n] each cell's fitted context id
    (-1: unknown). The draws use their own stream of ``seed``, not the manipulator's.
    """
    if list(outputs or []) != list(genes):
        raise ValueError("context_effect_scale > 0 needs a decoder whose outputs are the fitted genes "
                         f"({len(genes)} genes); this one has {len(list(outputs or []))} outputs. "
                         "Pass context_effect_scale=0.")
    means, counts = response_means
    seed_sequence = np.random.SeedSequence(int(seed), spawn_key=(0x5EED,))   # not the manipulator's stream
    generator = torch.Generator().manual_seed(int(seed_sequence.generate_state(1, np.uint64)[0]))
    return context_effects(means, counts, condition.source.cpu(), condition.target.cpu(), contexts, n_samples,
                           generator)
