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
responses. The discriminator lives
here and in training checkpoints, never in the saved artifact.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..execution import autocast
from ..instruments.manipulators.layers.cell_groups import feature_spread, paired_groups
from ..instruments.manipulators.layers.trunk import CGANTrunk
from .loop import History, TrainingLoop, split_validation

__all__ = ["CGANDiscriminator", "GANOptions", "gradient_penalty", "train_cgan", "ConditionalGenerator"]

#: the generator interface ``train_cgan`` needs:
#: ``(x [n, d], source [n], target [n], target covariates {name: [n]}) -> x' [n, d]``
ConditionalGenerator = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Mapping[str, torch.Tensor]], torch.Tensor]


class CGANDiscriminator(nn.Module):
    """``forward(x [n, d], condition [n]) -> (score [n], logits [n, n_conditions])``.

    ``score = w . h + e_condition . h`` (a projection critic) and ``logits = classifier(h)``, with
    ``h`` from an unconditioned :class:`CGANTrunk` of the generator's shape (attention written out
    so that the gradient penalty can differentiate it twice). With ``n_components`` the trunk reads
    the standardised input projected on its first principal axes (buffers set by
    :meth:`fit_inputs`), the space the energy-distance metric judges cells in.
    """

    def __init__(self, n_features: int, n_conditions: int, *, n_components: int | None = None, n_groups: int = 32,
                 token_dim: int = 32, n_heads: int = 4, n_blocks: int = 1, hidden: int = 256, n_layers: int = 2,
                 dropout: float = 0.0) -> None:
        super().__init__()
        inputs = n_features if n_components is None else min(int(n_components), n_features)
        self.register_buffer("input_mean", torch.zeros(n_features))
        self.register_buffer("input_std", torch.ones(n_features))
        self.register_buffer("axes", torch.eye(n_features, inputs) if n_components is not None else torch.zeros(0, 0))
        self.trunk = CGANTrunk(inputs, cond_dim=0, n_groups=n_groups, token_dim=token_dim, n_heads=n_heads,
                               n_blocks=n_blocks, hidden=hidden, n_layers=n_layers, dropout=dropout,
                               fused_attention=False)
        self.critic = nn.Linear(hidden, 1)
        self.projection = nn.Embedding(n_conditions, hidden)
        nn.init.normal_(self.projection.weight, std=1.0 / math.sqrt(hidden))
        self.classifier = nn.Linear(hidden, n_conditions)

    @torch.no_grad()
    def fit_inputs(self, x: torch.Tensor, seed: int = 0) -> None:
        """Standardise like the training cells ``x`` [n, d] (and find their principal axes)."""
        from ..representations.pca import fit_pca

        mean, std = feature_spread(x)
        if self.axes.numel() == 0:
            self.trunk.set_standardisation(mean, std)
            return
        self.input_mean, self.input_std = mean, std
        _, components, variance = fit_pca((x.float() - mean) / std, self.axes.shape[1], seed=seed)
        self.axes = components.T.contiguous().to(x.device)
        self.trunk.set_standardisation(torch.zeros_like(variance), variance.sqrt())

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.axes.numel():
            x = ((x - self.input_mean) / self.input_std) @ self.axes
        _, h = self.trunk(x)
        score = self.critic(h).squeeze(-1) + (self.projection(condition) * h).sum(-1)
        return score, self.classifier(h)


def gradient_penalty(discriminator: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, Any]],
                     real: torch.Tensor, fake: torch.Tensor, condition: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP penalty ``mean_i (||grad_x D(x_hat_i, c_i)||_2 - 1)^2`` (Gulrajani et al. 2017).

    ``real``, ``fake`` [n, d] are cells of the same conditions ``condition`` [n]; ``x_hat_i =
    eps_i real_i + (1 - eps_i) fake_i`` with one ``eps_i ~ U(0, 1)`` per cell. The norm is taken
    per cell over its features, in float32, and the graph is kept so that the penalty trains ``D``.
    """
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty needs real and fake of one shape; got {tuple(real.shape)} "
                         f"and {tuple(fake.shape)}.")
    eps = torch.rand(real.shape[0], 1, generator=generator, device=real.device, dtype=torch.float32)
    x_hat = (eps * real.detach().float() + (1 - eps) * fake.detach().float()).requires_grad_(True)
    with torch.autocast(device_type=real.device.type, enabled=False):
        score, _ = discriminator(x_hat, condition)
        (grad,) = torch.autograd.grad(score.float().sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


@dataclasses.dataclass(frozen=True)
class GANOptions:
    """Hyper-parameters of :func:`train_cgan` (see CGANManipulator for their meaning)."""

    max_epochs: int = 30
    batch_size: int = 64
    lr_generator: float = 2e-4
    lr_discriminator: float = 4e-4
    lr_tables: float = 2e-3
    betas: tuple[float, float] = (0.5, 0.9)
    n_critic: int = 1
    gp_weight: float = 10.0
    cycle_weight: float = 10.0
    identity_weight: float = 10.0
    classifier_weight: float = 1.0
    correction_weight: float = 0.0
    drift_weight: float = 1e-3
    min_group_cells: int = 5
    min_group_share: float = 0.0
    epoch_cells: int | None = None
    val_fraction: float = 0.1
    patience: int | None = 10
    mixed_precision: bool = False


class _GroupSampler:
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


def _l1(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (a.float() - b.float()).abs().mean() / scale


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp_min(1)


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
    sampler = _GroupSampler(train_rows, condition, groups, n_conditions, options.min_group_cells,
                           options.min_group_share)
    if sampler.present.numel() < 2:
        raise ValueError("After the validation split the training cells cover fewer than two conditions; "
                         "lower val_fraction or add cells.")
    rng = torch.Generator(device=device).manual_seed(seed + 1)
    index = torch.arange(x.shape[1], device=device) if feature_index is None else feature_index.to(device)
    xk = x.index_select(1, index)                                        # what the critic sees [n, K]
    scale = xk[train_rows].float().std(0).mean().clamp_min(1e-6)
    pick = lambda v: v.index_select(1, index)

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed + 2)
        discriminator = CGANDiscriminator(index.numel(), n_conditions, **dict(discriminator_kwargs or {})).to(device)
    discriminator.fit_inputs(xk[train_rows], seed=seed)
    tables = list(getattr(generator, "table_parameters", lambda: [])())
    table_ids = {id(p) for p in tables}
    network = [p for p in generator.parameters() if id(p) not in table_ids]
    opt_g = torch.optim.Adam([{"params": network, "lr": options.lr_generator},
                              {"params": tables, "lr": options.lr_tables}], betas=options.betas)
    moved = getattr(generator, "moved", None)          # (x', size of the cell-dependent correction [n]) if offered
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=options.lr_discriminator, betas=options.betas)
    amp_dtype = None
    if options.mixed_precision:
        amp_dtype = torch.bfloat16 if device.type == "cpu" or torch.cuda.is_bf16_supported() else torch.float16
    scaler_g = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    scaler_d = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    cast = (lambda: autocast(device, True, amp_dtype)) if amp_dtype is not None else contextlib.nullcontext

    def cov(rows: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v[rows] for k, v in covariates.items()}

    def step(rows: torch.Tensor) -> dict[str, torch.Tensor]:
        xa, a, ga = x[rows], condition[rows], groups[rows]
        for _ in range(options.n_critic):                                  # critic updates
            b = sampler.other_targets(a, rng)
            real_rows, matched = sampler.sample(ga, b, rng)
            with torch.no_grad(), cast():
                fake = pick(generator(xa, a, b, cov(real_rows)))
            with cast():
                score_real, logits_real = discriminator(xk[real_rows], b)
                score_fake, _ = discriminator(fake, b)
            wasserstein = _masked_mean(score_real.float() - score_fake.float(), matched)
            penalty = gradient_penalty(discriminator, xk[real_rows], fake, b, rng)
            classify = F.cross_entropy(logits_real.float(), b)
            drift = (score_real.float() ** 2).mean()
            loss_d = (-wasserstein + options.gp_weight * penalty + options.classifier_weight * classify
                      + options.drift_weight * drift)
            opt_d.zero_grad(set_to_none=True)
            scaler_d.scale(loss_d).backward()
            scaler_d.step(opt_d)
            scaler_d.update()

        b = sampler.other_targets(a, rng)                                  # generator update
        real_rows, matched = sampler.sample(ga, b, rng)
        for p in discriminator.parameters():
            p.requires_grad_(False)
        with cast():
            if moved is not None:
                fake, correction = moved(xa, a, b, cov(real_rows))
                correction = correction.float().mean()
            else:
                fake, correction = generator(xa, a, b, cov(real_rows)), torch.zeros((), device=device)
            score, logits = discriminator(pick(fake), b)
            cycled = pick(generator(fake, b, a, cov(rows)))
            same = pick(generator(xa, a, a, cov(rows)))
        adversarial = -_masked_mean(score.float(), matched)
        classify_fake = _masked_mean(F.cross_entropy(logits.float(), b, reduction="none"), matched)
        xa_k = xk[rows]
        cycle, identity = _l1(cycled, xa_k, scale), _l1(same, xa_k, scale)
        loss_g = (adversarial + options.classifier_weight * classify_fake + options.cycle_weight * cycle
                  + options.identity_weight * identity + options.correction_weight * correction)
        opt_g.zero_grad(set_to_none=True)
        scaler_g.scale(loss_g).backward()
        scaler_g.step(opt_g)
        scaler_g.update()
        for p in discriminator.parameters():
            p.requires_grad_(True)
        return {"wasserstein": wasserstein.detach(), "gp": penalty.detach(), "d_cls": classify.detach(),
                "g_adv": adversarial.detach(), "g_cls": classify_fake.detach(), "cycle": cycle.detach(),
                "identity": identity.detach(), "correction": correction.detach(), "matched": matched.float().mean()}

    validate = (_validation(generator, x, condition, groups, covariates, val_rows, sampler, index, scale)
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
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed + 3)  # dropout, if any
        history = loop.run(n_epoch, lambda r: step(rows_of(r)), device=device, validate=validate,
                           modules={"generator": generator, "discriminator": discriminator},
                           optimizers={"generator": opt_g, "discriminator": opt_d}, generators={"gan": rng})
    return history, discriminator


def _validation(generator: nn.Module, x: torch.Tensor, condition: torch.Tensor, groups: torch.Tensor,
                covariates: Mapping[str, torch.Tensor], rows: torch.Tensor, sampler: _GroupSampler,
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
        identity = float(_l1(same, xv_k, scale))
        total, weight = 0.0, 0
        for moving, b, real_mean in pairs:
            target = torch.full((moving.numel(),), b, device=x.device, dtype=torch.long)
            moved = generator(xv[moving], cv[moving], target, {}).index_select(1, index)
            total += float(((moved.float().mean(0) - real_mean) ** 2).mean() / scale**2) * moving.numel()
            weight += moving.numel()
        shift = total / max(weight, 1)
        return {"val_identity": identity, "val_shift": shift, "val_loss": identity + shift}

    return validate
