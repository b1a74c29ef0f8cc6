"""CellGen-style conditional GAN manipulator: a generator that moves a cell to a target condition.

The generator ``G(x, b)`` reads the cell ``x`` [n, d] through a :class:`CGANTrunk` (features cut
into groups that attend to each other through a gated residual, then an MLP), FiLM-conditioned at
the input and in every hidden layer on a learned embedding of the target condition ``b`` (plus
covariates such as dose or time when the model was fitted with them). It outputs a per-feature
affine map of its own input::

    x' = relu(x * gamma + beta)      (gene space: identity is easy, expression stays >= 0)
    x' = x * gamma + beta            (any other representation, e.g. PCA or a VAE's latent space)

with ``gamma = 1 + g(h)``, ``beta = s * b(h)`` (``s`` the per-feature spread), starting at the
identity. It is trained as a Wasserstein GAN with gradient penalty, an auxiliary condition
classifier, cycle and identity losses (:mod:`virtualcell.train.gan`); cell types are never used.
The generator is deterministic (a translation, no noise input), so its samples coincide.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ...component import Condition, Manipulator
from ...execution import batched_apply
from .group_means import repeat_samples
from .layers.condition_embedding import ConditionEmbedding
from .layers.trunk import CGANTrunk

__all__ = ["CGANManipulator", "CGANGenerator", "OUTPUTS"]

OUTPUTS = ("auto", "affine-relu", "affine")
_ARCHITECTURE = ("n_groups", "token_dim", "n_heads", "n_blocks", "hidden", "n_layers", "dropout")


class CGANGenerator(nn.Module):
    """``forward(x [n, d], target [n], covariates {name: [n]}) -> x' [n, d]``: x moved to ``target``."""

    def __init__(self, n_features: int, n_conditions: int, covariate_names: Sequence[str] = (), *,
                 output: str = "affine-relu", cond_dim: int = 32, n_groups: int = 64, token_dim: int = 32,
                 n_heads: int = 4, n_blocks: int = 1, hidden: int = 256, n_layers: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        if output not in ("affine-relu", "affine"):
            raise ValueError(f"output must be 'affine-relu' or 'affine'; got {output!r}.")
        self.output = output
        self.embed = ConditionEmbedding(n_conditions, cond_dim, covariate_names)
        self.trunk = CGANTrunk(n_features, cond_dim=cond_dim, n_groups=n_groups, token_dim=token_dim, n_heads=n_heads,
                               n_blocks=n_blocks, hidden=hidden, n_layers=n_layers, dropout=dropout)
        self.head = nn.Linear(hidden, 2 * n_features)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor, target: torch.Tensor,
                covariates: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        c = self.embed(target, covariates)
        gain, shift = self.head(self.trunk(x, c)).chunk(2, dim=-1)
        out = x * (1 + gain) + shift * self.trunk.feature_std
        return torch.relu(out) if self.output == "affine-relu" else out


class CGANManipulator(Manipulator):
    """Conditional GAN (CellGen: FiLM + feature-group attention) trained as a WGAN-GP with cycle loss.

    Works in gene space (``identity`` encoder, where the output is ``relu(x * gamma + beta)``) or in
    any representation. Needs no context (cell type) labels. Conditions may be ordered (time points,
    doses): :meth:`rollout` walks cells through a sequence of them.

    Architecture args: ``output`` (``"auto"``: ``affine-relu`` when every fitted value is >= 0,
    else ``affine``), ``cond_dim`` (condition embedding size), ``n_groups`` (feature groups =
    attention tokens), ``token_dim``, ``n_heads``, ``n_blocks`` (attention blocks), ``hidden``,
    ``n_layers`` (FiLM-modulated hidden layers), ``dropout``, ``use_covariates`` (condition on the
    fitted covariates such as dose or time).
    Training args (see :class:`virtualcell.train.gan.GANOptions`): ``max_epochs``, ``batch_size``,
    ``lr_generator``, ``lr_discriminator``, ``n_critic`` (critic updates per generator update),
    ``gp_weight``, ``cycle_weight``, ``identity_weight``, ``classifier_weight``, ``val_fraction``,
    ``patience`` (early stopping on the validation loss; None: never), ``mixed_precision``.
    ``fit(..., checkpoint_dir=...)`` makes training resumable.
    """

    stochastic: ClassVar[bool] = False
    requires_context: ClassVar[bool] = False
    test_config: ClassVar[dict[str, Any]] = {"cond_dim": 8, "n_groups": 4, "token_dim": 8, "n_heads": 2, "hidden": 16,
                                             "n_layers": 1, "max_epochs": 2, "batch_size": 64, "n_critic": 1,
                                             "patience": None}

    def __init__(self, output: str = "auto", cond_dim: int = 32, n_groups: int = 64, token_dim: int = 32,
                 n_heads: int = 4, n_blocks: int = 1, hidden: int = 256, n_layers: int = 2, dropout: float = 0.0,
                 use_covariates: bool = True, max_epochs: int = 200, batch_size: int = 128,
                 lr_generator: float = 2e-4, lr_discriminator: float = 2e-4, n_critic: int = 3,
                 gp_weight: float = 10.0, cycle_weight: float = 10.0, identity_weight: float = 10.0,
                 classifier_weight: float = 1.0, val_fraction: float = 0.1, patience: int | None = 20,
                 mixed_precision: bool = False) -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}; got {output!r}.")
        if token_dim % n_heads:
            raise ValueError(f"token_dim ({token_dim}) must be divisible by n_heads ({n_heads}).")
        self.network: CGANGenerator | None = None
        self.output_mode: str | None = None
        self.covariate_names: list[str] = []
        self.history: dict[str, Any] | None = None

    # -- building -------------------------------------------------------------------------------
    def _architecture(self) -> dict[str, Any]:
        return {k: self.config[k] for k in _ARCHITECTURE}

    def _build(self) -> None:
        self.network = CGANGenerator(self.n_features, self.n_conditions, self.covariate_names, output=self.output_mode,
                                     cond_dim=self.config["cond_dim"], **self._architecture())

    def fitted_state(self) -> dict[str, Any]:
        return {**super().fitted_state(), "output": self.output_mode, "covariate_names": list(self.covariate_names)}

    def load_fitted_state(self, state: Mapping[str, Any]) -> None:
        super().load_fitted_state(state)
        self.output_mode = str(state["output"])
        self.covariate_names = list(state["covariate_names"])
        self._build()

    # -- fitting --------------------------------------------------------------------------------
    def _fit(self, z: torch.Tensor, labels: Condition, *, seed: int = 0, progress: bool = True,
             checkpoint_dir: str | Path | None = None, **kwargs: Any) -> None:
        from ...train.gan import GANOptions, train_cgan

        mode = self.config["output"]
        self.output_mode = ("affine-relu" if bool((z >= 0).all()) else "affine") if mode == "auto" else mode
        self.covariate_names = sorted(labels.covariates) if self.config["use_covariates"] else []
        covariates = {k: labels.covariates[k].to(z.device) for k in self.covariate_names}
        target = labels.target.to(z.device)
        with torch.random.fork_rng(devices=[z.device] if z.device.type == "cuda" else []):
            torch.manual_seed(seed)
            self._build()
        self.network.to(z.device)
        self.network.trunk.set_standardisation(*_spread(z))
        self.network.embed.fit_covariates(target, covariates)
        keys = {f.name for f in GANOptions.__dataclass_fields__.values()}
        options = GANOptions(**{k: v for k, v in self.config.items() if k in keys})
        history, _ = train_cgan(self.network, z, target, covariates, n_conditions=self.n_conditions, options=options,
                                discriminator_kwargs=self._architecture(), seed=seed, progress=progress,
                                checkpoint_dir=checkpoint_dir)
        self.history = history.to_dict()
        self.network.eval()

    # -- prediction -----------------------------------------------------------------------------
    def _manipulate(self, z, condition, *, n_samples, generator):
        covariates = {k: v for k, v in condition.covariates.items() if k in self.covariate_names}
        rows = torch.arange(z.shape[0], device=z.device)

        def move(index: torch.Tensor) -> torch.Tensor:
            return self.network(z[index], condition.target[index], {k: v[index] for k, v in covariates.items()})

        with torch.no_grad():
            out = batched_apply(move, rows, batch_size=2048)
        return repeat_samples(out, n_samples)

    def rollout(self, z: torch.Tensor, conditions: Sequence[int] | Sequence[Condition], *,
                source: int | None = None) -> torch.Tensor:
        """Walk cells ``z`` [n, d] through ``conditions`` in order; returns every step [steps, n, d].

        Each entry is a condition id (every cell moved there; the model's fitted covariate means
        for that condition fill in dose / time) or a full :class:`Condition` for the step. Step
        ``k`` moves the output of step ``k - 1`` (the first step moves ``z``, which is in
        ``source`` when given).
        """
        self._check_fitted()
        if len(conditions) == 0:
            raise ValueError("rollout needs at least one condition to move to.")
        steps, current, previous = [], z, source
        for entry in conditions:
            if isinstance(entry, Condition):
                step = entry
            else:
                step = Condition.constant(z.shape[0], int(entry), source=previous)
            current = self.manipulate(current, step)
            previous = int(step.target[0]) if len(step) else previous
            steps.append(current)
        return torch.stack(steps)


def _spread(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and std [d] of ``z``, the std floored at a quarter of its average."""
    mean, std = z.float().mean(0), z.float().std(0, unbiased=False)
    return mean, std.clamp_min(0.25 * float(std.mean()) + 1e-6)
