"""Training a conditional generator as a Wasserstein GAN with gradient penalty (CellGen, made to run).

Control and stimulated cells are never the same cells, so the generator ``G(x, a -> b)`` (a cell
``x`` of condition ``a`` moved to ``b``) is trained on unpaired data, as in StarGAN (Choi et al. 2018):

* a critic ``D(x, b)`` (the generator's trunk without FiLM, a linear score plus a projection on the
  condition, Miyato & Koyama 2018) learns the Wasserstein-1 distance between real cells of ``b``
  and cells moved to ``b``, kept 1-Lipschitz by the gradient penalty of Gulrajani et al. (2017):
  ``E[(||grad_x D(x_hat, b)||_2 - 1)^2]`` with ``x_hat`` uniformly between a real and a fake cell
  of the same condition, one norm *per cell*, differentiated through (``create_graph=True``);
* an auxiliary classifier on the critic's trunk names the condition of a cell (AC-GAN): trained
  on real cells, and the generator is rewarded when its output is classified as ``b``;
* cycle ``||G(G(x, a -> b), b -> a) - x||_1`` and identity ``||G(x, a -> a) - x||_1`` losses keep
  the cell itself.

Group matching: with ``groups`` (any partition of the cells, e.g. contexts when known or
unsupervised clusters when not), each fake cell from group ``k`` is compared with a real cell of
the target condition *from the same group*, and fakes whose group has no real cells of the target
(fewer than ``min_group_cells``, or a share of the group below ``min_group_share`` times the
target's share of all cells) are left out of the adversarial terms. Otherwise a held-out cell
type, present only among the controls, would be pushed to look like the other cell types'
responses. The discriminator (``gan_critic.py``) lives here and in training checkpoints, never in
the saved artifact; one step is ``gan_step.py``, batches and validation ``gan_batches.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..execution import seeded
from .gan_batches import GroupSampler, validation
from .gan_critic import CGANDiscriminator, gradient_penalty
from .gan_options import GANOptions
from .gan_step import CGANStep
from .loop import History, TrainingLoop, split_validation

__all__ = ["CGANDiscriminator", "GANOptions", "gradient_penalty", "train_cgan", "ConditionalGenerator"]

#: the generator interface ``train_cgan`` needs:
#: ``(x [n, d], source [n], target [n], target covariates {name: [n]}) -> x' [n, d]``
ConditionalGenerator = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Mapping[str, torch.Tensor]], torch.Tensor]


def train_cgan(generator: nn.Module, x: torch.Tensor, condition: torch.Tensor,
               covariates: Mapping[str, torch.Tensor] | None = None, *, n_conditions: int,
               groups: torch.Tensor | None = None, options: GANOptions = GANOptions(),
               feature_index: torch.Tensor | None = None, discriminator_kwargs: Mapping[str, Any] | None = None,
               seed: int = 0, progress: bool = True, checkpoint_dir: str | Path | None = None
               ) -> tuple[History, CGANDiscriminator]:
    """Train ``generator`` in place on cells ``x`` [n, d] observed in ``condition`` [n].

    Args:
        generator: an ``nn.Module`` ``(x, source, target, covariates) -> x'``. Optional hooks:
            ``table_parameters()`` (trained at ``options.lr_tables``) and ``moved(...) -> (x',
            correction [n])``, whose mean squared cell-dependent correction is penalised with
            ``options.correction_weight``.
        covariates: {name: [n]} each cell's own values; a cell moved to ``b`` gets those of the
            real cell of ``b`` it is compared with.
        groups: [n] ids of a partition for matched critic batches (see the module doc); None: one group.
        feature_index: [K] the features the critic sees and the cycle / identity losses compare
            (default all). The penalty's gradient is over those K inputs, which is the whole input
            gradient since the critic reads nothing else.
        options: :class:`GANOptions` (``epoch_cells`` caps the cells of an epoch, drawn at random,
            so that large data sets validate and checkpoint more often); ``checkpoint_dir`` makes
            the run resumable.

    Validation (``options.val_fraction`` of the cells) reports ``val_identity`` (identity error)
    and ``val_shift``: for every matched (group, target) pair, the squared distance between the
    mean of the validation cells moved there and the mean of the real cells, over the feature
    spread; ``val_loss`` (their sum) drives early stopping (best weights restored).
    Returns the history and the trained discriminator.
    """
    device = x.device
    covariates = {k: v.to(device) for k, v in (covariates or {}).items()}
    condition = condition.to(device)
    groups = torch.zeros_like(condition) if groups is None else groups.to(device).long()
    present = torch.unique(condition)
    if present.numel() < 2:
        raise ValueError(f"train_cgan needs cells of at least two conditions; got only {present.tolist()}.")
    if options.n_critic < 1:
        raise ValueError(f"n_critic must be >= 1; got {options.n_critic}.")
    train_rows, val_rows = split_validation(x.shape[0], options.val_fraction, torch.Generator().manual_seed(seed))
    if val_rows.numel() and torch.unique(condition[val_rows.to(device)]).numel() < 2:
        train_rows, val_rows = torch.arange(x.shape[0]), torch.empty(0, dtype=torch.long)
    train_rows, val_rows = train_rows.to(device), val_rows.to(device)
    sampler = GroupSampler(train_rows, condition, groups, n_conditions, options.min_group_cells,
                           options.min_group_share)
    if sampler.present.numel() < 2:
        raise ValueError("After the validation split the training cells cover fewer than two conditions; "
                         "lower val_fraction or add cells.")
    rng = torch.Generator(device=device).manual_seed(seed + 1)
    index = torch.arange(x.shape[1], device=device) if feature_index is None else feature_index.to(device)
    xk = x.index_select(1, index)                                        # what the critic sees [n, K]
    scale = xk[train_rows].float().std(0).mean().clamp_min(1e-6)
    pick = lambda v: v.index_select(1, index)

    with seeded(seed + 2, device):
        discriminator = CGANDiscriminator(index.numel(), n_conditions, **dict(discriminator_kwargs or {})).to(device)
    discriminator.fit_inputs(xk[train_rows], seed=seed)
    step = CGANStep(generator, discriminator, x=x, xk=xk, condition=condition, groups=groups, covariates=covariates,
                    sampler=sampler, pick=pick, scale=scale, options=options, rng=rng)
    validate = (validation(generator, x, condition, groups, covariates, val_rows, sampler, index, scale)
                if val_rows.numel() else None)
    n_train = int(train_rows.numel())
    if options.epoch_cells is not None and options.epoch_cells < n_train:
        n_epoch = int(options.epoch_cells)     # an epoch: that many cells drawn at random (with replacement)
        rows_of = lambda r: train_rows[torch.randint(n_train, (r.numel(),), generator=rng, device=device)]
    else:
        n_epoch, rows_of = n_train, lambda r: train_rows[r]
    loop = TrainingLoop(max_epochs=options.max_epochs, batch_size=options.batch_size,
                        patience=options.patience if validate is not None else None, monitor="val_loss",
                        seed=seed, checkpoint_dir=checkpoint_dir, progress=progress, desc="cgan")
    with seeded(seed + 3, device):  # dropout, if any
        history = loop.run(n_epoch, lambda r: step(rows_of(r)), device=device, validate=validate,
                           modules={"generator": generator, "discriminator": discriminator},
                           optimizers={"generator": step.opt_g, "discriminator": step.opt_d}, generators={"gan": rng})
    return history, discriminator
