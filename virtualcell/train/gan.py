"""Training a conditional generator as a Wasserstein GAN with gradient penalty (CellGen, made to run).

Control and stimulated cells are never the same cells, so the generator ``G(x, b)`` (a cell ``x``
moved to condition ``b``) is trained on unpaired data, as in StarGAN (Choi et al. 2018):

* a critic ``D(x, b)`` (the generator's trunk without FiLM, a linear score plus a projection on the
  condition, Miyato & Koyama 2018) learns the Wasserstein-1 distance between real cells of ``b``
  and cells moved to ``b``, kept 1-Lipschitz by the gradient penalty of Gulrajani et al. (2017):
  ``E[(||grad_x D(x_hat, b)||_2 - 1)^2]`` with ``x_hat`` uniformly between a real and a fake cell
  of the same condition, one norm *per cell*, differentiated through (``create_graph=True``);
* an auxiliary classifier on the critic's trunk names the condition of a cell (AC-GAN): trained
  on real cells, and the generator is rewarded when its output is classified as ``b``;
* cycle ``||G(G(x, b), a) - x||_1`` and identity ``||G(x, a) - x||_1`` losses keep the cell itself.

No cell-type labels are used anywhere. The discriminator lives here and in training checkpoints,
never in the saved artifact.
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
from ..instruments.manipulators.layers.trunk import CGANTrunk
from .loop import History, TrainingLoop, split_validation

__all__ = ["CGANDiscriminator", "GANOptions", "gradient_penalty", "train_cgan", "ConditionalGenerator"]

#: the generator interface ``train_cgan`` needs: ``(x [n, d], target [n], covariates {name: [n]}) -> x' [n, d]``
ConditionalGenerator = Callable[[torch.Tensor, torch.Tensor, Mapping[str, torch.Tensor]], torch.Tensor]


class CGANDiscriminator(nn.Module):
    """``forward(x [n, d], condition [n]) -> (score [n], logits [n, n_conditions])``.

    ``score = w . h + e_condition . h`` (a projection critic) and ``logits = classifier(h)``, with
    ``h = trunk(x)`` an unconditioned :class:`CGANTrunk` of the generator's shape.
    """

    def __init__(self, n_features: int, n_conditions: int, *, n_groups: int = 64, token_dim: int = 32,
                 n_heads: int = 4, n_blocks: int = 1, hidden: int = 256, n_layers: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.trunk = CGANTrunk(n_features, cond_dim=0, n_groups=n_groups, token_dim=token_dim, n_heads=n_heads,
                               n_blocks=n_blocks, hidden=hidden, n_layers=n_layers, dropout=dropout)
        self.critic = nn.Linear(hidden, 1)
        self.projection = nn.Embedding(n_conditions, hidden)
        nn.init.normal_(self.projection.weight, std=1.0 / math.sqrt(hidden))
        self.classifier = nn.Linear(hidden, n_conditions)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
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
        raise ValueError(f"gradient_penalty needs real and fake of one shape; got {tuple(real.shape)} and {tuple(fake.shape)}.")
    eps = torch.rand(real.shape[0], 1, generator=generator, device=real.device, dtype=torch.float32)
    x_hat = (eps * real.detach().float() + (1 - eps) * fake.detach().float()).requires_grad_(True)
    with torch.autocast(device_type=real.device.type, enabled=False):
        score, _ = discriminator(x_hat, condition)
        (grad,) = torch.autograd.grad(score.float().sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


@dataclasses.dataclass(frozen=True)
class GANOptions:
    """Hyper-parameters of :func:`train_cgan` (see CGANManipulator for their meaning)."""

    max_epochs: int = 200
    batch_size: int = 128
    lr_generator: float = 2e-4
    lr_discriminator: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.9)
    weight_decay: float = 0.0
    n_critic: int = 3
    gp_weight: float = 10.0
    cycle_weight: float = 10.0
    identity_weight: float = 10.0
    classifier_weight: float = 1.0
    drift_weight: float = 1e-3
    val_fraction: float = 0.1
    patience: int | None = 20
    min_epochs: int = 0
    mixed_precision: bool = False


class _ConditionSampler:
    """Random training rows of given conditions: ``sample(conditions [m]) -> rows [m]``."""

    def __init__(self, rows: torch.Tensor, condition: torch.Tensor, n_conditions: int) -> None:
        order = torch.argsort(condition[rows], stable=True)
        self.sorted_rows = rows[order]
        self.counts = torch.bincount(condition[rows], minlength=n_conditions)
        self.offsets = torch.cumsum(self.counts, 0) - self.counts
        self.present = torch.nonzero(self.counts > 0).flatten()

    def sample(self, conditions: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        u = torch.rand(conditions.shape[0], generator=generator, device=conditions.device)
        pick = (u * self.counts[conditions]).long().clamp_max(self.counts[conditions] - 1)
        return self.sorted_rows[self.offsets[conditions] + pick]

    def other_targets(self, source: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """For each row a condition != its own, uniformly among the conditions that have cells."""
        k = self.present.numel()
        position = torch.searchsorted(self.present, source)               # index of source in present
        shift = torch.randint(1, k, source.shape, generator=generator, device=source.device)
        return self.present[(position + shift) % k]


def _l1(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (a.float() - b.float()).abs().mean() / scale


def train_cgan(generator: nn.Module, x: torch.Tensor, condition: torch.Tensor,
               covariates: Mapping[str, torch.Tensor] | None = None, *, n_conditions: int,
               options: GANOptions = GANOptions(), discriminator_kwargs: Mapping[str, Any] | None = None,
               seed: int = 0, progress: bool = True, checkpoint_dir: str | Path | None = None
               ) -> tuple[History, CGANDiscriminator]:
    """Train ``generator`` in place on cells ``x`` [n, d] observed in ``condition`` [n].

    ``generator(x, target, covariates) -> x'`` must be an ``nn.Module`` (its ``trunk`` gives the
    discriminator its input standardisation when it has one). ``covariates`` {name: [n]} are each
    cell's own covariate values; a cell moved to ``b`` is given those of a random real cell of ``b``.
    Needs cells of at least two conditions. Validation (``options.val_fraction`` of the cells)
    scores ``val_loss`` = identity error + the squared distance, per target condition, between the
    mean of the cells moved there and the mean of the real ones (both scaled by the feature spread);
    it drives early stopping (best weights restored). Returns the history and the discriminator.
    """
    device = x.device
    covariates = {k: v.to(device) for k, v in (covariates or {}).items()}
    present = torch.unique(condition)
    if present.numel() < 2:
        raise ValueError(f"train_cgan needs cells of at least two conditions; got only {present.tolist()}.")
    if options.n_critic < 1:
        raise ValueError(f"n_critic must be >= 1; got {options.n_critic}.")
    shuffle_seed = torch.Generator().manual_seed(seed)
    train_rows, val_rows = split_validation(x.shape[0], options.val_fraction, shuffle_seed)
    if val_rows.numel() and torch.unique(condition[val_rows]).numel() < 2:
        train_rows, val_rows = torch.arange(x.shape[0]), torch.empty(0, dtype=torch.long)
    train_rows, val_rows = train_rows.to(device), val_rows.to(device)
    sampler = _ConditionSampler(train_rows, condition, n_conditions)
    if sampler.present.numel() < 2:
        raise ValueError("After the validation split the training cells cover fewer than two conditions; "
                         "lower val_fraction or add cells.")
    rng = torch.Generator(device=device).manual_seed(seed + 1)
    scale = x[train_rows].float().std(0).mean().clamp_min(1e-6)

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed + 2)
        discriminator = CGANDiscriminator(x.shape[1], n_conditions, **dict(discriminator_kwargs or {})).to(device)
    trunk = getattr(generator, "trunk", None)
    if isinstance(trunk, CGANTrunk):
        discriminator.trunk.set_standardisation(trunk.feature_mean, trunk.feature_std)
    opt_g = torch.optim.Adam(generator.parameters(), lr=options.lr_generator, betas=options.betas,
                             weight_decay=options.weight_decay)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=options.lr_discriminator, betas=options.betas,
                             weight_decay=options.weight_decay)
    amp_dtype = None
    if options.mixed_precision:
        amp_dtype = torch.bfloat16 if device.type == "cpu" or torch.cuda.is_bf16_supported() else torch.float16
    scaler_g = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    scaler_d = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    cast = (lambda: autocast(device, True, amp_dtype)) if amp_dtype is not None else contextlib.nullcontext

    def cov(rows: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v[rows] for k, v in covariates.items()}

    def step(rows: torch.Tensor) -> dict[str, torch.Tensor]:
        xa, a = x[rows], condition[rows]
        for _ in range(options.n_critic):                                  # critic updates
            b = sampler.other_targets(a, rng)
            real_rows = sampler.sample(b, rng)
            with torch.no_grad(), cast():
                fake = generator(xa, b, cov(real_rows))
            with cast():
                score_real, logits_real = discriminator(x[real_rows], b)
                score_fake, _ = discriminator(fake, b)
            wasserstein = score_real.float().mean() - score_fake.float().mean()
            penalty = gradient_penalty(discriminator, x[real_rows], fake, b, rng)
            classify = F.cross_entropy(logits_real.float(), b)
            drift = (score_real.float() ** 2).mean()
            loss_d = (-wasserstein + options.gp_weight * penalty + options.classifier_weight * classify
                      + options.drift_weight * drift)
            opt_d.zero_grad(set_to_none=True)
            scaler_d.scale(loss_d).backward()
            scaler_d.step(opt_d)
            scaler_d.update()

        b = sampler.other_targets(a, rng)                                  # generator update
        target_cov = cov(sampler.sample(b, rng))
        for p in discriminator.parameters():
            p.requires_grad_(False)
        with cast():
            fake = generator(xa, b, target_cov)
            score, logits = discriminator(fake, b)
            cycled = generator(fake, a, cov(rows))
            same = generator(xa, a, cov(rows))
        adversarial = -score.float().mean()
        classify_fake = F.cross_entropy(logits.float(), b)
        cycle, identity = _l1(cycled, xa, scale), _l1(same, xa, scale)
        loss_g = (adversarial + options.classifier_weight * classify_fake + options.cycle_weight * cycle
                  + options.identity_weight * identity)
        opt_g.zero_grad(set_to_none=True)
        scaler_g.scale(loss_g).backward()
        scaler_g.step(opt_g)
        scaler_g.update()
        for p in discriminator.parameters():
            p.requires_grad_(True)
        return {"wasserstein": wasserstein.detach(), "gp": penalty.detach(), "d_cls": classify.detach(),
                "g_adv": adversarial.detach(), "g_cls": classify_fake.detach(), "cycle": cycle.detach(),
                "identity": identity.detach()}

    validate = _validation(generator, x, condition, covariates, val_rows, n_conditions, scale) if val_rows.numel() else None
    loop = TrainingLoop(max_epochs=options.max_epochs, batch_size=options.batch_size,
                        patience=options.patience if validate is not None else None, monitor="val_loss",
                        seed=seed, checkpoint_dir=checkpoint_dir, progress=progress, desc="cgan")
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed + 3)  # dropout, if any
        history = loop.run(int(train_rows.numel()), lambda r: step(train_rows[r]), device=device, validate=validate,
                           modules={"generator": generator, "discriminator": discriminator},
                           optimizers={"generator": opt_g, "discriminator": opt_d}, generators={"gan": rng})
    return history, discriminator


def _validation(generator: nn.Module, x: torch.Tensor, condition: torch.Tensor, covariates: Mapping[str, torch.Tensor],
                rows: torch.Tensor, n_conditions: int, scale: torch.Tensor) -> Callable[[], dict[str, float]]:
    """``validate() -> {val_identity, val_shift, val_loss}`` on the validation rows (no grad)."""
    xv, cv = x[rows], condition[rows]
    covv = {k: v[rows] for k, v in covariates.items()}
    present = torch.unique(cv).tolist()
    real_means = {b: xv[cv == b].float().mean(0) for b in present}

    def validate() -> dict[str, float]:
        same = generator(xv, cv, covv)
        identity = float(_l1(same, xv, scale))
        shifts = []
        for b in present:
            others = cv != b
            if not bool(others.any()):
                continue
            target = torch.full((int(others.sum()),), b, device=x.device, dtype=torch.long)
            moved = generator(xv[others], target, {})
            shifts.append(float(((moved.float().mean(0) - real_means[b]) ** 2).mean() / scale**2))
        shift = sum(shifts) / max(len(shifts), 1)
        return {"val_identity": identity, "val_shift": shift, "val_loss": identity + shift}

    return validate
