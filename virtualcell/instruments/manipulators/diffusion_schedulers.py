"""The diffusion manipulator's diffusers schedulers: names, defaults, construction and JSON form."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["SAMPLERS", "SAMPLER_DEFAULTS", "INVERSIONS", "DENOISERS", "TRAIN_SCHEDULER_DEFAULTS", "SAMPLING_ARGS",
           "scheduler_class", "scheduler_from_config", "scheduler_json", "cpu_generator"]

#: sampler name -> diffusers scheduler class (all restored from the training scheduler's config)
SAMPLERS: dict[str, str] = {
    "ddim": "DDIMScheduler",
    "dpm-solver++": "DPMSolverMultistepScheduler",
    "sde-dpm-solver++": "DPMSolverMultistepScheduler",
    "ddpm": "DDPMScheduler",
}
SAMPLER_DEFAULTS: dict[str, dict[str, Any]] = {
    "dpm-solver++": {"algorithm_type": "dpmsolver++", "solver_order": 2},
    "sde-dpm-solver++": {"algorithm_type": "sde-dpmsolver++", "solver_order": 2},
}
INVERSIONS = ("ddim", "noise")
DENOISERS = ("mlp", "transformer")
#: the training scheduler (``DDPMScheduler``) unless overridden by ``scheduler=``
TRAIN_SCHEDULER_DEFAULTS: dict[str, Any] = {
    "num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "prediction_type": "epsilon",
    "clip_sample": False, "timestep_spacing": "trailing",
}
#: init arguments that may differ between fit and manipulate (they leave the weights as they are)
SAMPLING_ARGS = frozenset({"sampler", "sampler_config", "num_inference_steps", "inversion", "strength",
                           "guidance_scale", "compose", "eta", "mc_dropout", "sample_batch_size",
                           "sampling_progress", "mixed_precision"})


def scheduler_class(name: str):
    import diffusers

    return getattr(diffusers, name)


def scheduler_from_config(name: str, config: Mapping[str, Any], **overrides: Any):
    """``diffusers.<name>.from_config`` with only the keys that class takes (no warnings about the rest)."""
    import inspect

    cls = scheduler_class(name)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
    merged = {**{k: v for k, v in dict(config).items() if k in accepted}, **overrides}
    return cls.from_config(merged)


def scheduler_json(scheduler) -> dict[str, Any]:
    """A diffusers scheduler's config as plain JSON with its ``_class_name`` (numpy/tuples -> lists).

    Non-finite numbers (DPM-Solver's ``lambda_min_clipped=-inf``) are left out: JSON cannot hold
    them, and ``from_config`` restores the class default for a missing key.
    """
    import math

    from ...config import to_json_value

    config = {"_class_name": type(scheduler).__name__, **dict(scheduler.config)}
    finite = {k: v for k, v in config.items() if not (isinstance(v, float) and not math.isfinite(v))}
    return to_json_value(finite, where="scheduler config")


def cpu_generator(generator: torch.Generator | None) -> torch.Generator:
    """Every draw is made on CPU so that one seed gives the same samples on every device.

    A CPU generator is used as it is; a CUDA generator contributes its seed; None draws a seed
    from torch's global generator (``torch.manual_seed`` controls it).
    """
    if generator is not None and generator.device.type == "cpu":
        return generator
    seed = generator.initial_seed() if generator is not None else int(torch.randint(2**62, (1,)))
    return torch.Generator().manual_seed(seed)
