"""One training step of the conditional GAN: ``n_critic`` critic updates, then one generator update."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from ..execution import autocast
from .gan_batches import GroupSampler, masked_mean, scaled_l1
from .gan_critic import CGANDiscriminator, gradient_penalty
from .gan_options import GANOptions

__all__ = ["CGANStep"]


class CGANStep:
    """``step(rows [B]) -> {loss name: value}`` for the training cells ``rows``.

    Holds the two Adam optimizers (the generator's ``table_parameters()``, if offered, at
    ``options.lr_tables``), the gradient scalers of mixed precision, and the random generator
    ``rng`` that draws targets and matched real cells. ``x`` [n, d] are all cells, ``xk`` [n, K]
    what the critic sees (``pick`` maps generator outputs to it), ``scale`` the feature spread
    the cycle and identity errors are divided by.
    """

    def __init__(self, generator: nn.Module, discriminator: CGANDiscriminator, *, x: torch.Tensor, xk: torch.Tensor,
                 condition: torch.Tensor, groups: torch.Tensor, covariates: Mapping[str, torch.Tensor],
                 sampler: GroupSampler, pick: Callable[[torch.Tensor], torch.Tensor], scale: torch.Tensor,
                 options: GANOptions, rng: torch.Generator) -> None:
        self.generator, self.discriminator, self.options, self.rng = generator, discriminator, options, rng
        self.x, self.xk, self.condition, self.groups, self.covariates = x, xk, condition, groups, covariates
        self.sampler, self.pick, self.scale = sampler, pick, scale
        device = x.device
        tables = list(getattr(generator, "table_parameters", lambda: [])())
        table_ids = {id(p) for p in tables}
        network = [p for p in generator.parameters() if id(p) not in table_ids]
        self.opt_g = torch.optim.Adam([{"params": network, "lr": options.lr_generator},
                                       {"params": tables, "lr": options.lr_tables}], betas=options.betas)
        self.opt_d = torch.optim.Adam(discriminator.parameters(), lr=options.lr_discriminator, betas=options.betas)
        self.moved = getattr(generator, "moved", None)  # (x', size of the cell-dependent correction [n]) if offered
        amp_dtype = None
        if options.mixed_precision:
            amp_dtype = torch.bfloat16 if device.type == "cpu" or torch.cuda.is_bf16_supported() else torch.float16
        self.scaler_g = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
        self.scaler_d = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
        self.cast = (lambda: autocast(device, True, amp_dtype)) if amp_dtype is not None else contextlib.nullcontext

    def cov(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v[rows] for k, v in self.covariates.items()}

    def critic_update(self, xa: torch.Tensor, a: torch.Tensor, ga: torch.Tensor) -> dict[str, torch.Tensor]:
        options, rng, discriminator = self.options, self.rng, self.discriminator
        b = self.sampler.other_targets(a, rng)
        real_rows, matched = self.sampler.sample(ga, b, rng)
        with torch.no_grad(), self.cast():
            fake = self.pick(self.generator(xa, a, b, self.cov(real_rows)))
        with self.cast():
            score_real, logits_real = discriminator(self.xk[real_rows], b)
            score_fake, _ = discriminator(fake, b)
        wasserstein = masked_mean(score_real.float() - score_fake.float(), matched)
        penalty = gradient_penalty(discriminator, self.xk[real_rows], fake, b, rng)
        classify = F.cross_entropy(logits_real.float(), b)
        drift = (score_real.float() ** 2).mean()
        loss_d = (-wasserstein + options.gp_weight * penalty + options.classifier_weight * classify
                  + options.drift_weight * drift)
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler_d.scale(loss_d).backward()
        self.scaler_d.step(self.opt_d)
        self.scaler_d.update()
        return {"wasserstein": wasserstein.detach(), "gp": penalty.detach(), "d_cls": classify.detach()}

    def generator_update(self, rows: torch.Tensor, xa: torch.Tensor, a: torch.Tensor, ga: torch.Tensor
                         ) -> dict[str, torch.Tensor]:
        options, generator, pick = self.options, self.generator, self.pick
        b = self.sampler.other_targets(a, self.rng)
        real_rows, matched = self.sampler.sample(ga, b, self.rng)
        for p in self.discriminator.parameters():
            p.requires_grad_(False)
        with self.cast():
            if self.moved is not None:
                fake, correction = self.moved(xa, a, b, self.cov(real_rows))
                correction = correction.float().mean()
            else:
                fake, correction = generator(xa, a, b, self.cov(real_rows)), torch.zeros((), device=xa.device)
            score, logits = self.discriminator(pick(fake), b)
            cycled = pick(generator(fake, b, a, self.cov(rows)))
            same = pick(generator(xa, a, a, self.cov(rows)))
        adversarial = -masked_mean(score.float(), matched)
        classify_fake = masked_mean(F.cross_entropy(logits.float(), b, reduction="none"), matched)
        xa_k = self.xk[rows]
        cycle, identity = scaled_l1(cycled, xa_k, self.scale), scaled_l1(same, xa_k, self.scale)
        loss_g = (adversarial + options.classifier_weight * classify_fake + options.cycle_weight * cycle
                  + options.identity_weight * identity + options.correction_weight * correction)
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler_g.scale(loss_g).backward()
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        for p in self.discriminator.parameters():
            p.requires_grad_(True)
        return {"g_adv": adversarial.detach(), "g_cls": classify_fake.detach(), "cycle": cycle.detach(),
                "identity": identity.detach(), "correction": correction.detach(), "matched": matched.float().mean()}

    def __call__(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        xa, a, ga = self.x[rows], self.condition[rows], self.groups[rows]
        for _ in range(self.options.n_critic):
            critic = self.critic_update(xa, a, ga)
        return {**critic, **self.generator_update(rows, xa, a, ga)}
