"""Conditional diffusion manipulator: counterfactual cells by inversion and guided denoising.

A denoiser ``eps(x_t, t, condition, context, covariates)`` is trained with the DDPM noise-prediction
objective (diffusers' ``DDPMScheduler.add_noise``) on normalised cells of any representation, with
condition dropout for classifier-free guidance. ``manipulate`` keeps each cell's identity: the cell
is inverted to noise level ``t_s`` (``strength`` of the chain) under its own (source) condition, by
deterministic DDIM inversion (``inversion="ddim"``) or by forward noising (``inversion="noise"``,
SDEdit), and denoised under the target condition with a swappable diffusers scheduler (DDIM,
DPM-Solver++, DDPM), guided by ``guidance_scale``.

With ``arithmetic_prior=1`` the diffusion runs on cells minus their condition's balanced mean
(scGen's latent arithmetic): the additive shift is applied exactly and the network models what it
misses (context-specific and distributional changes), as residual diffusion does for a regression
mean (CorrDiff); ``strength=0`` is then latent arithmetic. The default (0) lets the network learn
the whole response: on Kang OOS it predicted the top DEGs better (see benchmarks/RESULTS.md).

Samples and uncertainty (``n_samples > 1``; ``n_samples == 1`` is the central prediction):
- the model: Monte Carlo dropout, one dropout mask per sample shared by all its cells;
- single cells: DDIM's ``eta`` or forward noising.
The spread of the per-sample population means is the model's uncertainty of the mean response (see
``virtualcell.evaluate.calibration``). The uncertainty of an unseen context's response (how far it
may lie from the training contexts' responses) is added by ``PerturbationPipeline`` in gene space
for every manipulator (``context_effect_scale``, ``virtualcell.pipelines.context_effects``): in
this representation the training contexts' responses spread far less than once decoded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from ...component import Condition, Manipulator
from ...execution import progress_bar, seeded
from .diffusion_sampling import GuidedSampling
from .diffusion_schedulers import (DENOISERS, INVERSIONS, SAMPLER_DEFAULTS, SAMPLERS, SAMPLING_ARGS, TRAIN_SCHEDULER_DEFAULTS,
                                   cpu_generator, scheduler_class, scheduler_from_config, scheduler_json)

__all__ = ["DiffusionManipulator", "SAMPLERS", "TRAIN_SCHEDULER_DEFAULTS"]

class DiffusionManipulator(GuidedSampling, Manipulator):
    """Classifier-free-guided conditional diffusion with per-cell counterfactuals.

    Network and training:
        denoiser: ``"mlp"`` (``denoisers.ResidualMLPDenoiser``) or ``"transformer"`` over feature groups
            (``denoisers.FeatureGroupTransformerDenoiser``: ``n_tokens`` groups, ``heads`` attention heads).
        hidden, depth, cond_dim, dropout: the denoiser's width, blocks, conditioning width and dropout.
        use_context: condition the denoiser on the context (cell type) when ``labels.context`` is given.
        scheduler: overrides of the training ``DDPMScheduler`` config (see ``TRAIN_SCHEDULER_DEFAULTS``).
        max_epochs, batch_size, lr, weight_decay, ema_decay, validation_fraction, patience: the
            training loop (``virtualcell.train.diffusion.train_denoiser``); patience=None: no early stop.
        condition_dropout, context_dropout, covariate_dropout: probabilities of the null label.
        mixed_precision: autocast training and sampling (bf16 on CPU, fp16/bf16 on CUDA).
        checkpoint_dir: resumable training checkpoints (None: none).

        arithmetic_prior: fraction in [0, 1] of their condition's balanced mean removed from the cells
            before diffusion (see the module doc; True = 1, False = 0).

    Sampling (change them on a fitted model with :meth:`with_sampling`):
        sampler: ``"ddim"``, ``"dpm-solver++"``, ``"sde-dpm-solver++"`` or ``"ddpm"``.
        sampler_config: overrides of that scheduler's config (e.g. ``{"solver_order": 3}``).
        num_inference_steps: steps of the full chain; ``strength`` in (0, 1] of them are used.
        inversion: ``"ddim"`` (deterministic DDIM inversion under the source condition) or ``"noise"``.
        strength: how far each cell is inverted (1: to pure noise; small: stays close to the cell).
        guidance_scale: classifier-free guidance ``eps_u + w (eps_c - eps_u)`` (1: none).
        compose: weight in [0, 1] of the condition's direction learned across contexts (see ``_eps``).
        eta: DDIM's per-cell stochasticity (0: deterministic denoising).
        mc_dropout: one dropout mask per sample shared by all cells (the model's uncertainty).
        sample_batch_size: rows (cells x samples) per network call.
    """

    stochastic: ClassVar[bool] = True
    #: left by artifacts saved when the context random effect was drawn here (now ``PerturbationPipeline``)
    retired_args: ClassVar[frozenset[str]] = frozenset({"context_effect_scale"})
    retired_tensors: ClassVar[frozenset[str]] = frozenset({"group_means", "group_counts"})
    test_config: ClassVar[dict[str, Any]] = {
        "hidden": 32, "depth": 2, "cond_dim": 16, "max_epochs": 4, "batch_size": 32, "patience": None,
        "num_inference_steps": 10, "sampling_progress": False,
    }

    def __init__(self, *, denoiser: str = "mlp", hidden: int = 256, depth: int = 3, cond_dim: int = 128,
                 dropout: float = 0.1, n_tokens: int = 16, heads: int = 4,
                 use_context: bool = True, arithmetic_prior: float = 0.0, scheduler: dict | None = None,
                 max_epochs: int = 300, batch_size: int = 128, lr: float = 1e-3, weight_decay: float = 1e-4,
                 ema_decay: float | None = 0.999, validation_fraction: float = 0.1, patience: int | None = 60,
                 condition_dropout: float = 0.1, context_dropout: float = 0.2, covariate_dropout: float = 0.1,
                 mixed_precision: bool = False, checkpoint_dir: str | None = None,
                 sampler: str = "ddim", sampler_config: dict | None = None, num_inference_steps: int = 50,
                 inversion: str = "ddim", strength: float = 0.8, guidance_scale: float = 2.0, compose: float = 1.0,
                 eta: float = 0.0,
                 mc_dropout: bool = True, sample_batch_size: int = 8192,
                 sampling_progress: bool = True) -> None:
        super().__init__()
        if denoiser not in DENOISERS:
            raise ValueError(f"Unknown denoiser {denoiser!r}; choose one of {list(DENOISERS)}.")
        if denoiser == "transformer" and (hidden % heads or n_tokens < 1):
            raise ValueError(f"The transformer denoiser needs hidden ({hidden}) divisible by heads ({heads}) and "
                             f"n_tokens >= 1 (got {n_tokens}).")
        if sampler not in SAMPLERS:
            raise ValueError(f"Unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}.")
        if inversion not in INVERSIONS:
            raise ValueError(f"Unknown inversion {inversion!r}; choose one of {list(INVERSIONS)}.")
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must lie in [0, 1] (the fraction of the chain to invert); got {strength}.")
        if not 0.0 <= float(arithmetic_prior) <= 1.0:
            raise ValueError(f"arithmetic_prior must lie in [0, 1] (the fraction of the condition mean removed); "
                             f"got {arithmetic_prior}.")
        if not 0.0 <= compose <= 1.0:
            raise ValueError(f"compose must lie in [0, 1] (0: guidance within the context); got {compose}.")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1; got {num_inference_steps}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1); got {dropout}.")
        if scheduler:
            import inspect

            accepted = set(inspect.signature(scheduler_class("DDPMScheduler").__init__).parameters) - {"self"}
            unknown = sorted(set(scheduler) - accepted)
            if unknown:
                raise ValueError(f"scheduler= has keys {unknown} that diffusers' DDPMScheduler does not take; "
                                 f"it takes {sorted(accepted)}.")
        self.register_buffer("feature_mean", torch.zeros(0))    # [d]
        self.register_buffer("feature_std", torch.ones(0))      # [d]
        self.register_buffer("covariate_mean", torch.zeros(0))  # [k]
        self.register_buffer("covariate_std", torch.ones(0))    # [k]
        self.register_buffer("condition_means", torch.zeros(0, 0))      # [N, d] balanced, or [0, 0]
        self.covariate_names: list[str] = []
        self.denoiser: torch.nn.Module | None = None
        self.train_scheduler_config: dict[str, Any] = {**TRAIN_SCHEDULER_DEFAULTS, **dict(scheduler or {})}

    # -- schedulers ------------------------------------------------------------------------------
    def training_scheduler(self):
        """A fresh diffusers ``DDPMScheduler`` (the noise schedule the denoiser was trained with)."""
        return scheduler_from_config("DDPMScheduler", self.train_scheduler_config)

    def sampling_scheduler(self):
        """A fresh sampling scheduler: the ``sampler`` class ``from_config`` of the training scheduler."""
        name = self.config["sampler"]
        overrides = {**SAMPLER_DEFAULTS.get(name, {}), **dict(self.config["sampler_config"] or {})}
        return scheduler_from_config(SAMPLERS[name], self.training_scheduler().config, **overrides)

    def inversion_scheduler(self):
        """A fresh ``DDIMInverseScheduler`` on the training noise schedule."""
        return scheduler_from_config("DDIMInverseScheduler", self.training_scheduler().config)

    # -- fitted state ----------------------------------------------------------------------------
    def _build_denoiser(self, n_covariates: int):
        from ...nn.denoisers import FeatureGroupTransformerDenoiser, ResidualMLPDenoiser

        c = self.config
        n_contexts = self.n_contexts if c["use_context"] else 0
        shared = {"hidden": c["hidden"], "depth": c["depth"], "cond_dim": c["cond_dim"], "dropout": c["dropout"]}
        if c["denoiser"] == "transformer":
            return FeatureGroupTransformerDenoiser(self.n_features, self.n_conditions, n_contexts, n_covariates,
                                                   heads=c["heads"], n_tokens=min(c["n_tokens"], self.n_features),
                                                   **shared)
        return ResidualMLPDenoiser(self.n_features, self.n_conditions, n_contexts, n_covariates, **shared)

    def fitted_state(self) -> dict[str, Any]:
        return {**super().fitted_state(), "covariates": list(self.covariate_names),
                "train_scheduler": scheduler_json(self.training_scheduler()),
                "sampling_scheduler": scheduler_json(self.sampling_scheduler())}

    def load_fitted_state(self, state: Mapping[str, Any]) -> None:
        super().load_fitted_state(state)
        self.covariate_names = list(state.get("covariates", []))
        if "train_scheduler" in state:
            self.train_scheduler_config = {k: v for k, v in dict(state["train_scheduler"]).items()
                                           if not k.startswith("_")}
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
        for name, buffer in self.named_buffers(recurse=False):
            setattr(clone, name, buffer.detach().clone())
        clone.denoiser.load_state_dict(self.denoiser.state_dict())
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

        from .latent_arithmetic import balanced_means

        cfg = self.config
        if cfg["arithmetic_prior"]:
            self.condition_means = balanced_means(z, labels.target, labels.context, self.n_conditions,
                                                  torch.Generator().manual_seed(seed))
            z = z - self._prior_means(labels.target)
        else:
            self.condition_means = z.new_zeros(0, 0)
        self.feature_mean = z.mean(0)
        self.feature_std = z.std(0).clamp_min(1e-4 * float(z.std(0).max()) + 1e-8)
        self.covariate_names = sorted(labels.covariates)
        if self.covariate_names:
            values = torch.stack([labels.covariates[k].to(z.device).float() for k in self.covariate_names], 1)
            self.covariate_mean, self.covariate_std = values.mean(0), values.std(0).clamp_min(1e-6)
        else:
            self.covariate_mean, self.covariate_std = z.new_zeros(0), z.new_ones(0)
        with seeded(seed):
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
        self.training_history, last = history.record(), (history.epochs[-1] if history.epochs else {})
        self.training_summary = {"epochs": len(history.epochs), "best_epoch": history.best_epoch,
                                 "seconds": round(history.seconds, 3), "stopped_early": history.stopped_early,
                                 **{k: float(v) for k, v in last.items() if k in ("loss", "val_loss")}}

    def _prior_means(self, ids: torch.Tensor) -> torch.Tensor:
        """The balanced condition means [n, d] of ``ids`` (zeros without the arithmetic prior)."""
        weight = float(self.config["arithmetic_prior"])
        if weight == 0:
            return torch.zeros(len(ids), self.n_features, device=ids.device)
        means = weight * self.condition_means[ids]
        if torch.isnan(means).any():
            bad = sorted(set(ids[torch.isnan(means).any(1)].tolist()))
            raise ValueError(f"Condition id(s) {bad} had no cells when the diffusion manipulator was fitted; "
                             "it cannot move cells from or to them.")
        return means

    def _normalise(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.feature_mean) / self.feature_std

    def _denormalise(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.feature_std + self.feature_mean

    @torch.no_grad()
    def _manipulate(self, z: torch.Tensor, condition: Condition, *, n_samples: int,
                    generator: torch.Generator | None) -> torch.Tensor:
        if self.denoiser is None:
            raise RuntimeError("DiffusionManipulator has no denoiser; fit or load it first.")
        if self.config["arithmetic_prior"] and condition.source is None:
            raise ValueError("The diffusion manipulator with an arithmetic_prior needs condition.source (the "
                             "condition each cell is in now); pass it, or fit with arithmetic_prior=0.")
        self.denoiser.eval()
        generator = cpu_generator(generator)
        device, (n, d) = z.device, z.shape
        masks = None  # one sample: the central prediction (the mean network)
        if n_samples > 1 and self.config["mc_dropout"] and self.config["dropout"] > 0:
            masks = [m.to(device) for m in self.denoiser.draw_dropout_masks(n_samples, generator)]
        context = None
        if self.denoiser.context is not None and condition.context is not None:
            if len(condition.context) and int(condition.context.max()) >= self.n_contexts:
                raise ValueError(f"condition.context ids must lie in [0, {self.n_contexts}) (the contexts seen "
                                 f"in fit); got {int(condition.context.max())}. Pass context=None for a new one.")
            context = condition.context
        source = condition.source if condition.source is not None else torch.full_like(
            condition.target, self.denoiser.null_condition)
        start = z - self._prior_means(source) if condition.source is not None else z
        shift = self._prior_means(condition.target)
        covariates, known = self._covariate_matrix(condition.covariates, n, device)
        out = torch.empty(n_samples, n, d, device=device, dtype=z.dtype)
        chunks = list(self._row_chunks(n, n_samples)) if self._n_steps() > 0 else []
        bar = progress_bar(chunks, desc="diffusion sampling",
                           enabled=self.config["sampling_progress"] and len(chunks) > 1)
        for rows in bar:
            m = rows.stop - rows.start
            repeat = lambda v: None if v is None else v[rows].repeat(n_samples, *([1] * (v.ndim - 1)))
            x = repeat(self._normalise(start).float())                        # [S * m, d], sample-major
            sample_masks = None if masks is None else [mk.repeat_interleave(m, 0) for mk in masks]
            x = self._invert(x, repeat(source), repeat(context), sample_masks, generator)
            x = self._denoise(x, repeat(condition.target), repeat(context), repeat(covariates), known,
                              sample_masks, generator)
            out[:, rows] = self._denormalise(x).view(n_samples, m, d).to(z.dtype)
        if not chunks:  # strength 0: no diffusion, only the prior's shift
            out[:] = start
        return out + shift
