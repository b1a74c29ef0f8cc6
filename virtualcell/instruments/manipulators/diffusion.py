"""Conditional diffusion manipulator: counterfactual cells by inversion and guided denoising.

A denoiser ``eps(x_t, t, condition, context, covariates)`` is trained with the DDPM noise-prediction
objective (diffusers' ``DDPMScheduler.add_noise``) on normalised cells ``x = (z - mean) / std`` of
any representation, with condition dropout for classifier-free guidance. ``manipulate`` keeps each
cell's identity: the cell is inverted to noise level ``t_s`` (``strength`` of the chain) under its
own (source) condition, by deterministic DDIM inversion (``inversion="ddim"``) or by forward noising
(``inversion="noise"``, SDEdit), and then denoised under the target condition with a swappable
diffusers scheduler (DDIM, DPM-Solver++, DDPM), guided by ``guidance_scale``.

Samples and uncertainty: each of the ``n_samples`` samples is one network from the approximate
posterior (Monte Carlo dropout: one dropout mask per sample, shared by every cell), plus per-cell
noise from ``eta`` (DDIM) or the forward noising. The spread of the samples is the predictive
uncertainty per cell; the spread of the per-sample population means is the uncertainty of the mean
response (see ``virtualcell.evaluate.calibration``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import torch

from ...component import Condition, Manipulator
from ...execution import autocast, progress_bar

__all__ = ["DiffusionManipulator", "SAMPLERS", "TRAIN_SCHEDULER_DEFAULTS"]

#: sampler name -> diffusers scheduler class (all restored from the training scheduler's config)
SAMPLERS: dict[str, str] = {
    "ddim": "DDIMScheduler",
    "dpm-solver++": "DPMSolverMultistepScheduler",
    "sde-dpm-solver++": "DPMSolverMultistepScheduler",
    "ddpm": "DDPMScheduler",
}
_SAMPLER_DEFAULTS: dict[str, dict[str, Any]] = {
    "dpm-solver++": {"algorithm_type": "dpmsolver++", "solver_order": 2},
    "sde-dpm-solver++": {"algorithm_type": "sde-dpmsolver++", "solver_order": 2},
}
INVERSIONS = ("ddim", "noise")
#: the training scheduler (``DDPMScheduler``) unless overridden by ``scheduler=``
TRAIN_SCHEDULER_DEFAULTS: dict[str, Any] = {
    "num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "prediction_type": "epsilon",
    "clip_sample": False, "timestep_spacing": "trailing",
}
#: init arguments that only change sampling (they may differ between fit and manipulate)
SAMPLING_ARGS = frozenset({"sampler", "sampler_config", "num_inference_steps", "inversion", "strength",
                           "guidance_scale", "eta", "mc_dropout", "sample_batch_size", "sampling_progress"})


def _scheduler_class(name: str):
    import diffusers

    return getattr(diffusers, name)


def _json_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A diffusers scheduler config as plain JSON (numpy/tuples turned into lists)."""
    from ...config import to_json_value

    return to_json_value({k: v for k, v in dict(config).items()}, where="scheduler config")


def _cpu_generator(generator: torch.Generator | None) -> torch.Generator:
    """Every draw is made on CPU so that one seed gives the same samples on every device.

    A CPU generator is used as it is; a CUDA generator contributes its seed; None draws a seed
    from torch's global generator (``torch.manual_seed`` controls it).
    """
    if generator is not None and generator.device.type == "cpu":
        return generator
    seed = generator.initial_seed() if generator is not None else int(torch.randint(2**62, (1,)))
    return torch.Generator().manual_seed(seed)


class DiffusionManipulator(Manipulator):
    """Classifier-free-guided conditional diffusion with per-cell counterfactuals.

    Network and training:
        hidden, depth, cond_dim, dropout: residual-MLP denoiser (``denoisers.ResidualMLPDenoiser``).
        use_context: condition the denoiser on the context (cell type) when ``labels.context`` is given.
        scheduler: overrides of the training ``DDPMScheduler`` config (see ``TRAIN_SCHEDULER_DEFAULTS``).
        max_epochs, batch_size, lr, weight_decay, ema_decay, validation_fraction, patience: the
            training loop (``virtualcell.train.diffusion.train_denoiser``); patience=None: no early stop.
        condition_dropout, context_dropout, covariate_dropout: probabilities of the null label.
        mixed_precision: autocast training and sampling (bf16 on CPU, fp16/bf16 on CUDA).
        checkpoint_dir: resumable training checkpoints (None: none).

    Sampling (change them on a fitted model with :meth:`with_sampling`):
        sampler: ``"ddim"``, ``"dpm-solver++"``, ``"sde-dpm-solver++"`` or ``"ddpm"``.
        sampler_config: overrides of that scheduler's config (e.g. ``{"solver_order": 3}``).
        num_inference_steps: steps of the full chain; ``strength`` in (0, 1] of them are used.
        inversion: ``"ddim"`` (deterministic DDIM inversion under the source condition) or ``"noise"``.
        strength: how far each cell is inverted (1: to pure noise; small: stays close to the cell).
        guidance_scale: classifier-free guidance ``eps_u + w (eps_c - eps_u)`` (1: none).
        eta: DDIM's per-cell stochasticity (0: deterministic denoising).
        mc_dropout: one dropout mask per sample shared by all cells (the model's uncertainty).
        sample_batch_size: rows (cells x samples) per network call.
    """

    stochastic: ClassVar[bool] = True
    test_config: ClassVar[dict[str, Any]] = {
        "hidden": 32, "depth": 2, "cond_dim": 16, "max_epochs": 4, "batch_size": 32, "patience": None,
        "num_inference_steps": 10, "sampling_progress": False,
    }

    def __init__(self, *, hidden: int = 512, depth: int = 4, cond_dim: int = 128, dropout: float = 0.1,
                 use_context: bool = False, scheduler: dict | None = None,
                 max_epochs: int = 500, batch_size: int = 128, lr: float = 1e-3, weight_decay: float = 1e-4,
                 ema_decay: float | None = 0.999, validation_fraction: float = 0.1, patience: int | None = 50,
                 condition_dropout: float = 0.1, context_dropout: float = 0.1, covariate_dropout: float = 0.1,
                 mixed_precision: bool = False, checkpoint_dir: str | None = None,
                 sampler: str = "ddim", sampler_config: dict | None = None, num_inference_steps: int = 50,
                 inversion: str = "ddim", strength: float = 0.6, guidance_scale: float = 1.0, eta: float = 0.0,
                 mc_dropout: bool = True, sample_batch_size: int = 8192, sampling_progress: bool = True) -> None:
        super().__init__()
        if sampler not in SAMPLERS:
            raise ValueError(f"Unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}.")
        if inversion not in INVERSIONS:
            raise ValueError(f"Unknown inversion {inversion!r}; choose one of {list(INVERSIONS)}.")
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must lie in [0, 1] (the fraction of the chain to invert); got {strength}.")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1; got {num_inference_steps}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1); got {dropout}.")
        if scheduler:
            import inspect

            accepted = set(inspect.signature(_scheduler_class("DDPMScheduler").__init__).parameters) - {"self"}
            unknown = sorted(set(scheduler) - accepted)
            if unknown:
                raise ValueError(f"scheduler= has keys {unknown} that diffusers' DDPMScheduler does not take; "
                                 f"it takes {sorted(accepted)}.")
        self.register_buffer("feature_mean", torch.zeros(0))    # [d]
        self.register_buffer("feature_std", torch.ones(0))      # [d]
        self.register_buffer("covariate_mean", torch.zeros(0))  # [k]
        self.register_buffer("covariate_std", torch.ones(0))    # [k]
        self.covariate_names: list[str] = []
        self.denoiser: torch.nn.Module | None = None
        self.train_scheduler_config: dict[str, Any] = {**TRAIN_SCHEDULER_DEFAULTS, **dict(scheduler or {})}
        self.training_summary: dict[str, Any] = {}

    # -- schedulers ------------------------------------------------------------------------------
    def training_scheduler(self):
        """A fresh diffusers ``DDPMScheduler`` (the noise schedule the denoiser was trained with)."""
        return _scheduler_class("DDPMScheduler").from_config(self.train_scheduler_config)

    def sampling_scheduler(self):
        """A fresh sampling scheduler: the ``sampler`` class ``from_config`` of the training scheduler."""
        name = self.config["sampler"]
        overrides = {**_SAMPLER_DEFAULTS.get(name, {}), **dict(self.config["sampler_config"] or {})}
        return _scheduler_class(SAMPLERS[name]).from_config(self.training_scheduler().config, **overrides)

    def inversion_scheduler(self):
        """A fresh ``DDIMInverseScheduler`` on the training noise schedule."""
        return _scheduler_class("DDIMInverseScheduler").from_config(self.training_scheduler().config)

    # -- fitted state ----------------------------------------------------------------------------
    def _build_denoiser(self, n_covariates: int):
        from .denoisers import ResidualMLPDenoiser

        n_contexts = self.n_contexts if self.config["use_context"] else 0
        return ResidualMLPDenoiser(self.n_features, self.n_conditions, n_contexts, n_covariates,
                                   hidden=self.config["hidden"], depth=self.config["depth"],
                                   cond_dim=self.config["cond_dim"], dropout=self.config["dropout"])

    def fitted_state(self) -> dict[str, Any]:
        return {**super().fitted_state(), "covariates": list(self.covariate_names),
                "train_scheduler": _json_config(self.training_scheduler().config),
                "sampling_scheduler": _json_config(self.sampling_scheduler().config),
                "training": dict(self.training_summary)}

    def load_fitted_state(self, state: Mapping[str, Any]) -> None:
        super().load_fitted_state(state)
        self.covariate_names = list(state.get("covariates", []))
        if "train_scheduler" in state:
            self.train_scheduler_config = {k: v for k, v in dict(state["train_scheduler"]).items()
                                           if not k.startswith("_")}
        self.training_summary = dict(state.get("training", {}))
        self.denoiser = self._build_denoiser(len(self.covariate_names))
        self.covariate_mean = torch.zeros(len(self.covariate_names))
        self.covariate_std = torch.ones(len(self.covariate_names))

    def with_sampling(self, **changes: Any) -> "DiffusionManipulator":
        """A copy sharing nothing but equal weights, with other sampling arguments (``SAMPLING_ARGS``)."""
        self._check_fitted()
        bad = sorted(set(changes) - SAMPLING_ARGS)
        if bad:
            raise ValueError(f"with_sampling changes sampling only; {bad} change the model. "
                             f"Allowed: {sorted(SAMPLING_ARGS)}.")
        clone = type(self).from_config(self.config, **changes)
        clone.load_fitted_state(self.fitted_state())
        clone.load_state_dict(self.state_dict())
        clone.features, clone.is_fitted = list(self.features or []), True
        return clone.to(self.device).eval()

    # -- fitting ---------------------------------------------------------------------------------
    def _covariate_matrix(self, covariates: Mapping[str, torch.Tensor], n: int, device) -> tuple[torch.Tensor | None, bool]:
        """[n, k] standardised covariates in ``covariate_names`` order, and whether all are known."""
        if not self.covariate_names:
            return None, False
        if not all(name in covariates for name in self.covariate_names):
            return torch.zeros(n, len(self.covariate_names), device=device), False
        values = torch.stack([covariates[name].to(device).float() for name in self.covariate_names], 1)
        return (values - self.covariate_mean) / self.covariate_std, True

    def _fit(self, z: torch.Tensor, labels: Condition, *, seed: int = 0, progress: bool = True, **kwargs: Any) -> None:
        from ...train.diffusion import DenoisingData, train_denoiser

        cfg = self.config
        self.feature_mean = z.mean(0)
        self.feature_std = z.std(0).clamp_min(1e-4 * float(z.std(0).max()) + 1e-8)
        self.covariate_names = sorted(labels.covariates)
        if self.covariate_names:
            values = torch.stack([labels.covariates[k].to(z.device).float() for k in self.covariate_names], 1)
            self.covariate_mean, self.covariate_std = values.mean(0), values.std(0).clamp_min(1e-6)
        else:
            self.covariate_mean, self.covariate_std = z.new_zeros(0), z.new_ones(0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.denoiser = self._build_denoiser(len(self.covariate_names)).to(z.device)
        covariates, _ = self._covariate_matrix(labels.covariates, z.shape[0], z.device)
        use_context = cfg["use_context"] and labels.context is not None and self.n_contexts > 0
        data = DenoisingData(self._normalise(z), labels.target.to(z.device),
                             labels.context.to(z.device) if use_context else None, covariates)
        history = train_denoiser(
            self.denoiser, self.training_scheduler(), data, max_epochs=cfg["max_epochs"],
            batch_size=cfg["batch_size"], lr=cfg["lr"], weight_decay=cfg["weight_decay"],
            condition_dropout=cfg["condition_dropout"], context_dropout=cfg["context_dropout"],
            covariate_dropout=cfg["covariate_dropout"], ema_decay=cfg["ema_decay"],
            validation_fraction=cfg["validation_fraction"], patience=cfg["patience"], seed=seed,
            mixed_precision=cfg["mixed_precision"], checkpoint_dir=cfg["checkpoint_dir"], progress=progress)
        last = history.epochs[-1] if history.epochs else {}
        self.training_summary = {"epochs": len(history.epochs), "best_epoch": history.best_epoch,
                                 "seconds": round(history.seconds, 3), "stopped_early": history.stopped_early,
                                 **{k: float(v) for k, v in last.items() if k in ("loss", "val_loss")}}

    def _normalise(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.feature_mean) / self.feature_std

    def _denormalise(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.feature_std + self.feature_mean

    # -- sampling --------------------------------------------------------------------------------
    def _eps(self, x: torch.Tensor, t: torch.Tensor, condition: torch.Tensor, context: torch.Tensor | None,
             covariates: torch.Tensor | None, known: bool, masks: list[torch.Tensor] | None,
             guidance_scale: float) -> torch.Tensor:
        """The (guided) model output for ``x`` [B, d] at timestep ``t`` (float32)."""
        b = x.shape[0]
        t = t.to(x.device).expand(b)
        known_mask = torch.full((b,), known, dtype=torch.bool, device=x.device) if covariates is not None else None
        with autocast(x.device, self.config["mixed_precision"]):
            if guidance_scale == 1.0:
                return self.denoiser(x, t, condition, context, covariates, known_mask, masks).float()
            null = torch.full_like(condition, self.denoiser.null_condition)
            unknown = None if known_mask is None else torch.zeros_like(known_mask)
            twice = lambda v: None if v is None else torch.cat([v, v])
            out = self.denoiser(twice(x), twice(t), torch.cat([condition, null]), twice(context), twice(covariates),
                                None if known_mask is None else torch.cat([known_mask, unknown]),
                                None if masks is None else [torch.cat([m, m]) for m in masks]).float()
        conditional, unconditional = out[:b], out[b:]
        return unconditional + guidance_scale * (conditional - unconditional)

    def _n_steps(self) -> int:
        return int(round(self.config["strength"] * self.config["num_inference_steps"]))

    def _invert(self, x: torch.Tensor, source: torch.Tensor, context, masks, generator: torch.Generator) -> torch.Tensor:
        """``x`` [B, d] clean -> noisy at the sampler's first timestep (DDIM inversion or forward noising)."""
        n_total, k = self.config["num_inference_steps"], self._n_steps()
        sampler = self.sampling_scheduler()
        sampler.set_timesteps(n_total)
        start = sampler.timesteps[n_total - k]
        if self.config["inversion"] == "noise":
            noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
            return self.training_scheduler().add_noise(x, noise, start.reshape(1).to(x.device).long())
        inverse = self.inversion_scheduler()
        inverse.set_timesteps(n_total)
        ratio = inverse.config.num_train_timesteps // n_total
        for t in inverse.timesteps[:k]:
            current = (t - ratio).clamp_min(0)  # the model sees the time the sample is at now
            eps = self._eps(x, current, source, context, None, False, masks, 1.0)
            x = inverse.step(eps, t, x).prev_sample
        return x

    def _denoise(self, x: torch.Tensor, target: torch.Tensor, context, covariates, known: bool, masks,
                 generator: torch.Generator) -> torch.Tensor:
        n_total, k = self.config["num_inference_steps"], self._n_steps()
        sampler = self.sampling_scheduler()
        sampler.set_timesteps(n_total)
        if hasattr(sampler, "set_begin_index"):
            sampler.set_begin_index(n_total - k)
        extra = {"generator": generator}
        if self.config["sampler"] == "ddim":
            extra["eta"] = self.config["eta"]
        for t in sampler.timesteps[n_total - k:]:
            eps = self._eps(x, t, target, context, covariates, known, masks, self.config["guidance_scale"])
            x = sampler.step(eps, t, x, **extra).prev_sample
        return x

    def _row_chunks(self, n: int, n_samples: int) -> Iterator[slice]:
        rows = max(1, self.config["sample_batch_size"] // n_samples)
        for begin in range(0, n, rows):
            yield slice(begin, min(begin + rows, n))

    @torch.no_grad()
    def _manipulate(self, z: torch.Tensor, condition: Condition, *, n_samples: int,
                    generator: torch.Generator | None) -> torch.Tensor:
        if self.denoiser is None:
            raise RuntimeError("DiffusionManipulator has no denoiser; fit or load it first.")
        self.denoiser.eval()
        generator = _cpu_generator(generator)
        device, (n, d) = z.device, z.shape
        if self._n_steps() == 0:
            return z.unsqueeze(0).expand(n_samples, n, d).clone()
        masks = None
        if self.config["mc_dropout"] and self.config["dropout"] > 0:
            masks = [m.to(device) for m in self.denoiser.draw_dropout_masks(n_samples, generator)]
        context = None
        if self.denoiser.context is not None and condition.context is not None:
            if len(condition.context) and int(condition.context.max()) >= self.n_contexts:
                raise ValueError(f"condition.context ids must lie in [0, {self.n_contexts}) (the contexts seen "
                                 f"in fit); got {int(condition.context.max())}. Pass context=None for a new one.")
            context = condition.context
        source = condition.source if condition.source is not None else torch.full_like(
            condition.target, self.denoiser.null_condition)
        covariates, known = self._covariate_matrix(condition.covariates, n, device)
        out = torch.empty(n_samples, n, d, device=device, dtype=z.dtype)
        chunks = list(self._row_chunks(n, n_samples))
        bar = progress_bar(chunks, desc="diffusion sampling",
                           enabled=self.config["sampling_progress"] and len(chunks) > 1)
        for rows in bar:
            m = rows.stop - rows.start
            repeat = lambda v: None if v is None else v[rows].repeat(n_samples, *([1] * (v.ndim - 1)))
            x = repeat(self._normalise(z).float())                            # [S * m, d], sample-major
            sample_masks = None if masks is None else [mk.repeat_interleave(m, 0) for mk in masks]
            x = self._invert(x, repeat(source), repeat(context), sample_masks, generator)
            x = self._denoise(x, repeat(condition.target), repeat(context), repeat(covariates), known,
                              sample_masks, generator)
            out[:, rows] = self._denormalise(x).view(n_samples, m, d).to(z.dtype)
        return out
