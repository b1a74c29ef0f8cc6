"""Noise-prediction training of a conditional denoiser (DDPM objective) with condition dropout.

For a minibatch of clean vectors ``x0`` [b, d]: draw timesteps ``t`` ~ U{0..T-1} and noise
``eps`` ~ N(0, I), form ``x_t = scheduler.add_noise(x0, eps, t)`` (diffusers' DDPMScheduler) and
regress the denoiser's output on the scheduler's target (``eps``, ``v`` or ``x0`` by its
``prediction_type``). Conditions are replaced by the null token with probability
``condition_dropout`` so that one network learns the conditional and the unconditional model
(classifier-free guidance). Every random draw comes from one CPU ``torch.Generator``, which the
training loop checkpoints, so a resumed run continues with the same numbers.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..execution import autocast
from .loop import History, TrainingLoop, split_validation

__all__ = ["DenoisingData", "ExponentialMovingAverage", "NoisePredictionStep", "noise_prediction_target",
           "validation_loss", "train_denoiser"]


@dataclasses.dataclass
class DenoisingData:
    """Training tensors on one device.

    Attributes:
        x: [n, d] normalised clean vectors.
        condition: [n] long condition ids.
        context: [n] long context ids, or None (the denoiser then sees the null context).
        covariates: [n, k] standardised covariates, or None.
    """

    x: torch.Tensor
    condition: torch.Tensor
    context: torch.Tensor | None = None
    covariates: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])


class ExponentialMovingAverage(nn.Module):
    """An EMA copy of a model's weights, ``shadow <- decay * shadow + (1 - decay) * weights``.

    The effective decay warms up as ``min(decay, (1 + k) / (10 + k))`` after ``k`` updates; the
    update counter is a buffer, so a checkpoint restores it.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__()
        self.decay = decay
        self.shadow = copy.deepcopy(model).eval()
        for param in self.shadow.parameters():
            param.requires_grad_(False)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        k = int(self.updates)
        decay = min(self.decay, (1 + k) / (10 + k))
        torch._foreach_lerp_(list(self.shadow.parameters()), [p.detach() for p in model.parameters()], 1.0 - decay)
        self.updates += 1

    def train(self, mode: bool = True) -> "ExponentialMovingAverage":  # the shadow never trains
        super().train(mode)
        self.shadow.eval()
        return self


def noise_prediction_target(scheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """What the denoiser regresses on for the scheduler's ``prediction_type``: eps, v or x0 [b, d]."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(x0, noise, t)
    if kind == "sample":
        return x0
    raise ValueError(f"Unsupported prediction_type {kind!r}; use 'epsilon', 'v_prediction' or 'sample'.")


def _rows(value: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor | None:
    return None if value is None else value[rows]


class NoisePredictionStep:
    """``step(rows) -> {"loss": mse}``: one optimiser step of the noise-prediction objective.

    Args:
        model: denoiser ``model(x_t, t, condition, context, covariates, covariates_known)``.
        optimizer: its optimiser.
        scheduler: a diffusers ``DDPMScheduler`` (noise schedule and ``add_noise``).
        data: the training tensors (on the model's device).
        generator: CPU generator for timesteps, noise and condition dropout.
        condition_dropout: probability of the null condition (and unknown covariates).
        context_dropout: probability of the null context.
        covariate_dropout: extra probability that covariates are marked unknown.
        ema: weights average updated after every step, or None.
        mixed_precision: autocast the forward pass (bf16 on CPU, fp16/bf16 on CUDA with loss scaling).
        max_grad_norm: gradient clipping (None: none).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, data: DenoisingData, *,
                 generator: torch.Generator, condition_dropout: float = 0.1, context_dropout: float = 0.1,
                 covariate_dropout: float = 0.1, ema: ExponentialMovingAverage | None = None,
                 mixed_precision: bool = False, max_grad_norm: float | None = 1.0) -> None:
        self.model, self.optimizer, self.scheduler, self.data = model, optimizer, scheduler, data
        self.generator, self.ema, self.max_grad_norm = generator, ema, max_grad_norm
        self.condition_dropout, self.context_dropout = condition_dropout, context_dropout
        self.covariate_dropout, self.mixed_precision = covariate_dropout, mixed_precision
        self.device = data.x.device
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self.null_condition = model.null_condition
        self.null_context = getattr(model, "null_context", 0)
        uses_fp16 = mixed_precision and self.device.type == "cuda" and not torch.cuda.is_bf16_supported()
        self.scaler = torch.amp.GradScaler("cuda", enabled=uses_fp16)

    def _uniform(self, b: int) -> torch.Tensor:
        return torch.rand(b, generator=self.generator).to(self.device)

    def __call__(self, rows: torch.Tensor) -> Mapping[str, torch.Tensor]:
        data, b = self.data, rows.numel()
        x0 = data.x[rows]
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (b,), generator=self.generator).to(self.device)
        noise = torch.randn(x0.shape, generator=self.generator).to(self.device, x0.dtype)
        dropped = self._uniform(b) < self.condition_dropout
        condition = torch.where(dropped, torch.full_like(data.condition[rows], self.null_condition), data.condition[rows])
        context = _rows(data.context, rows)
        if context is not None:
            context = torch.where(self._uniform(b) < self.context_dropout, torch.full_like(context, self.null_context), context)
        covariates, known = _rows(data.covariates, rows), None
        if covariates is not None:
            known = ~dropped & (self._uniform(b) >= self.covariate_dropout)
        x_t = self.scheduler.add_noise(x0, noise, t)
        target = noise_prediction_target(self.scheduler, x0, noise, t)
        dropout_seed = int(torch.randint(2**62, (1,), generator=self.generator))
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), autocast(self.device, self.mixed_precision):
            # the network's dropout follows the checkpointed generator (seeding only the RNG in use)
            if self.device.type == "cuda":
                torch.cuda.manual_seed(dropout_seed)
            else:
                torch.default_generator.manual_seed(dropout_seed)
            prediction = self.model(x_t, t, condition, context, covariates, known)
        loss = nn.functional.mse_loss(prediction.float(), target.float())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.max_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.parameters, self.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)
        return {"loss": loss.detach()}


def validation_loss(model: nn.Module, scheduler, data: DenoisingData, rows: torch.Tensor, *, seed: int,
                    repeats: int = 4, mixed_precision: bool = False) -> Callable[[], dict[str, float]]:
    """A closure returning ``{"val_loss": ...}``: the objective on ``rows`` with fixed draws of (t, noise).

    The draws are made once (seeded), so successive epochs are compared on identical problems.
    """
    generator = torch.Generator().manual_seed(seed)
    device = data.x.device
    n, d = rows.numel(), data.x.shape[1]
    t = torch.randint(0, scheduler.config.num_train_timesteps, (repeats, n), generator=generator).to(device)
    noise = torch.randn(repeats, n, d, generator=generator).to(device)

    @torch.no_grad()
    def evaluate() -> dict[str, float]:
        x0 = data.x[rows]
        condition, context = data.condition[rows], _rows(data.context, rows)
        covariates = _rows(data.covariates, rows)
        total = torch.zeros((), device=device)
        for r in range(repeats):
            x_t = scheduler.add_noise(x0, noise[r], t[r])
            with autocast(device, mixed_precision):
                prediction = model(x_t, t[r], condition, context, covariates, None)
            total = total + nn.functional.mse_loss(prediction.float(), noise_prediction_target(scheduler, x0, noise[r], t[r]))
        return {"val_loss": float(total / repeats)}

    return evaluate


def train_denoiser(model: nn.Module, scheduler, data: DenoisingData, *, max_epochs: int = 500, batch_size: int = 128,
                   lr: float = 1e-3, weight_decay: float = 1e-4, condition_dropout: float = 0.1,
                   context_dropout: float = 0.1, covariate_dropout: float = 0.1, ema_decay: float | None = 0.999,
                   validation_fraction: float = 0.1, patience: int | None = 30, seed: int = 0,
                   mixed_precision: bool = False, checkpoint_dir: str | Path | None = None,
                   progress: bool = True) -> History:
    """Train ``model`` on ``data`` with :class:`TrainingLoop`; returns the loop's history.

    With ``ema_decay``, the EMA weights are validated and copied into ``model`` at the end. With a
    validation split and ``patience``, training stops early and keeps the best epoch's weights.
    ``checkpoint_dir`` makes the run resumable (model, EMA, optimiser and generator states).
    """
    generator = torch.Generator().manual_seed(seed)
    train_rows, val_rows = split_validation(len(data), validation_fraction, generator)
    device = data.x.device
    train = DenoisingData(data.x[train_rows.to(device)], data.condition[train_rows.to(device)],
                          _rows(data.context, train_rows.to(device)), _rows(data.covariates, train_rows.to(device)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, foreach=True)
    ema = ExponentialMovingAverage(model, ema_decay) if ema_decay else None
    step = NoisePredictionStep(model, optimizer, scheduler, train, generator=generator,
                               condition_dropout=condition_dropout, context_dropout=context_dropout,
                               covariate_dropout=covariate_dropout, ema=ema, mixed_precision=mixed_precision)
    validate: Callable[[], Mapping[str, Any]] | None = None
    if val_rows.numel() > 0:
        validate = validation_loss(ema.shadow if ema is not None else model, scheduler, data, val_rows.to(device),
                                   seed=seed + 1, mixed_precision=mixed_precision)
    modules: dict[str, nn.Module] = {"denoiser": model}
    if ema is not None:
        modules["ema"] = ema
    loop = TrainingLoop(max_epochs=max_epochs, batch_size=batch_size, patience=patience if validate else None,
                        seed=seed, checkpoint_dir=checkpoint_dir, progress=progress, desc="diffusion")
    history = loop.run(len(train), step, device=device, validate=validate, modules=modules,
                       optimizers={"adamw": optimizer}, generators={"noise": generator})
    if ema is not None:
        model.load_state_dict(ema.shadow.state_dict())
    model.eval()
    return history
