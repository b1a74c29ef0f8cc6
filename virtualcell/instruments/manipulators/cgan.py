"""CellGen-style conditional GAN manipulator: a generator that moves a cell to a target condition.

The generator ``G(x, a -> b)`` reads the cell ``x`` [n, d] through a :class:`CGANTrunk` (features
cut into groups that attend to each other through a gated residual, then an MLP), FiLM-conditioned
at the input and in every hidden layer on a learned embedding of the target condition ``b`` and
the cell's current condition ``a`` (plus covariates such as dose or time when the model was fitted
with them). It outputs a per-feature affine map of its own input::

    x' = relu(x * gamma + beta)      (gene space: identity is easy, expression stays >= 0)
    x' = x * gamma + beta            (any other representation, e.g. PCA or a VAE's latent space)

    gamma = 1 + g(x, a, b) + s_b - s_a
    beta  = std * (m(x, a, b) + L_b - L_a + l_b - l_a)

``g`` and ``m`` are the cell-dependent part, decoded group by group from the trunk; ``s`` and ``l``
are learned per-condition tables and ``L`` fixed per-condition locations set to the condition means
averaged with equal weight over cell groups (contexts, or unsupervised pseudo-contexts), so that
``a -> a`` is the identity, ``a -> b -> a`` cancels, and training starts from a balanced additive
shift. Only the ``gan_features`` most variable features are read and refined by the network; the
others move by ``L_b - L_a``. Trained as a Wasserstein GAN with gradient penalty, an auxiliary
condition classifier, cycle and identity losses, with critic batches matched by cell group
(:mod:`virtualcell.train.gan`); cell-type labels are never required. The generator is
deterministic (a translation of the cell, no noise input), so its samples coincide.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ...component import Condition, Manipulator
from ...execution import batched_apply, seeded
from ...nn.group_means import repeat_samples
from ...nn.layers.cell_groups import condition_offsets, feature_spread, pseudo_contexts
from ...nn.layers.condition_embedding import ConditionEmbedding
from ...nn.layers.feature_attention import GroupDecoder
from ...nn.layers.trunk import CGANTrunk

__all__ = ["CGANManipulator", "CGANGenerator", "OUTPUTS"]

OUTPUTS = ("auto", "affine-relu", "affine")
_ARCHITECTURE = ("n_groups", "token_dim", "n_heads", "n_blocks", "hidden", "n_layers", "dropout")


class CGANGenerator(nn.Module):
    """``forward(x [n, d], source [n], target [n], covariates {name: [n]}) -> x' [n, d]``.

    Moves cells ``x`` from condition ``source`` to ``target``; covariates are the target's. The
    network reads and refines only the ``gan_features`` most variable features (buffer
    ``gan_index`` [K]); every feature also moves by a fixed per-condition shift (buffer
    ``base_location`` [n_conditions, d], in units of ``feature_scale`` [d]).
    """

    def __init__(self, n_features: int, n_conditions: int, covariate_names: Sequence[str] = (), *,
                 gan_features: int | None = None, output: str = "affine-relu", cond_dim: int = 32, n_groups: int = 32,
                 token_dim: int = 32, n_heads: int = 4, n_blocks: int = 1, hidden: int = 256, n_layers: int = 2,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if output not in ("affine-relu", "affine"):
            raise ValueError(f"output must be 'affine-relu' or 'affine'; got {output!r}.")
        k = n_features if gan_features is None else min(int(gan_features), n_features)
        self.output = output
        self.register_buffer("gan_index", torch.arange(k))
        self.register_buffer("feature_scale", torch.ones(n_features))
        self.register_buffer("base_location", torch.zeros(n_conditions, n_features))
        self.embed = ConditionEmbedding(n_conditions, cond_dim, covariate_names)
        self.source_embedding = nn.Embedding(n_conditions, cond_dim)
        self.trunk = CGANTrunk(k, cond_dim=cond_dim, n_groups=n_groups, token_dim=token_dim, n_heads=n_heads,
                               n_blocks=n_blocks, hidden=hidden, n_layers=n_layers, dropout=dropout)
        self.to_tokens = nn.Linear(hidden, token_dim)
        self.decode = GroupDecoder(self.trunk.groups, 2)
        self.scale_offset = nn.Embedding(n_conditions, k)                 # s_c, zero at the start
        self.location = nn.Embedding(n_conditions, k)                     # learned refinement of l_c
        nn.init.zeros_(self.scale_offset.weight)
        nn.init.zeros_(self.location.weight)

    @torch.no_grad()
    def prepare(self, z: torch.Tensor, locations: torch.Tensor | None = None) -> None:
        """Choose the GAN features (largest variance of ``z`` [n, d]), set scales and base locations [N, d]."""
        mean, std = feature_spread(z)
        self.gan_index = torch.sort(torch.argsort(z.float().var(0), descending=True)[: self.gan_index.numel()]).values
        self.feature_scale = std
        self.trunk.set_standardisation(mean[self.gan_index], std[self.gan_index])
        if locations is not None:
            self.base_location = (locations / std).float()

    def table_parameters(self) -> list[nn.Parameter]:
        """The per-condition tables (one value per feature and condition: trained at a higher rate)."""
        return [self.scale_offset.weight, self.location.weight]

    def forward(self, x: torch.Tensor, source: torch.Tensor, target: torch.Tensor,
                covariates: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        return self.moved(x, source, target, covariates)[0]

    def moved(self, x: torch.Tensor, source: torch.Tensor, target: torch.Tensor,
              covariates: Mapping[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x' [n, d], correction [n])``: the moved cells and the mean square of their cell-dependent
        gain and shift (what training keeps small where the critic has nothing to say)."""
        xs = x.index_select(1, self.gan_index)
        c = self.embed(target, covariates) + self.source_embedding(source)
        tokens, h = self.trunk(xs, c)
        gain, shift = self.decode(tokens + self.to_tokens(h)[:, None, :]).chunk(2, dim=-1)
        correction = (gain.square() + shift.square()).mean(1)
        gain = gain + self.scale_offset(target) - self.scale_offset(source)
        shift = shift + self.location(target) - self.location(source)
        base = (self.base_location[target] - self.base_location[source]) * self.feature_scale      # [n, d]
        scale = self.feature_scale[self.gan_index]
        refined = xs * (1 + gain) + base.index_select(1, self.gan_index) + shift * scale
        out = (x + base).index_copy(1, self.gan_index, refined.to(x.dtype))
        return (torch.relu(out) if self.output == "affine-relu" else out), correction


class CGANManipulator(Manipulator):
    """Conditional GAN (CellGen: FiLM + feature-group attention) trained as a WGAN-GP with cycle loss.

    Works in gene space (``identity`` encoder, where the output is ``relu(x * gamma + beta)``) or in
    any representation. Needs no context (cell type) labels: without them it groups cells by
    k-means for its matched critic batches and balanced condition means; given them (``fit`` with
    ``labels.context``) it uses them instead. ``manipulate`` needs ``condition.source`` (each
    cell's current condition). Conditions may be ordered (time points, doses): :meth:`rollout`
    walks cells through a sequence of them.

    Architecture args: ``output`` (``"auto"``: ``affine-relu`` when every fitted value is >= 0,
    else ``affine``), ``gan_features`` (the network reads, refines and is judged on this many of
    the most variable features; the others move by the per-condition shift only; None: all),
    ``cond_dim`` (condition embedding size), ``n_groups`` (feature groups = attention tokens),
    ``token_dim``, ``n_heads``, ``n_blocks`` (attention blocks), ``hidden``, ``n_layers``
    (FiLM-modulated hidden layers), ``dropout``, ``use_covariates`` (condition on the fitted
    covariates such as dose or time), ``init_locations`` (start the fixed per-condition locations
    at the group-balanced condition means; False: at zero).
    Matching args: the critic compares each moved cell with real cells of the target condition
    from the same group (contexts when ``fit`` gets them and ``use_context``; otherwise
    ``match_groups`` k-means clusters, 0: no matching); a group needs ``min_group_cells`` real
    cells of the target to take part in the adversarial loss and, for k-means clusters, a share of
    them at least ``min_group_share`` times the target's share of all cells (the same rule picks
    the clusters that the balanced condition means average over). ``critic_components``: the critic
    reads the GAN features projected on this many principal axes (None: the features themselves).
    Training args (see :class:`virtualcell.train.gan.GANOptions`): ``max_epochs``, ``batch_size``,
    ``lr_generator``, ``lr_discriminator``, ``lr_tables`` (the per-condition tables),
    ``n_critic`` (critic updates per generator update), ``gp_weight``, ``cycle_weight``,
    ``identity_weight``, ``classifier_weight``, ``correction_weight`` (keeps the cell-dependent
    part small where nothing asks for it), ``epoch_cells`` (cells per epoch, drawn at random; None:
    every training cell once), ``val_fraction``, ``patience`` (early stopping on the validation
    loss, best epoch restored; None: never), ``mixed_precision`` (bf16 autocast; fp16 with loss
    scaling on GPUs without bf16).
    ``fit(..., checkpoint_dir=...)`` makes training resumable.
    """

    stochastic: ClassVar[bool] = False
    requires_context: ClassVar[bool] = False
    test_config: ClassVar[dict[str, Any]] = {"gan_features": 6, "cond_dim": 8, "n_groups": 4, "token_dim": 8,
                                             "n_heads": 2, "hidden": 16, "n_layers": 1, "max_epochs": 2,
                                             "batch_size": 64, "patience": None}

    def __init__(self, output: str = "auto", gan_features: int | None = 1024, cond_dim: int = 32, n_groups: int = 32,
                 token_dim: int = 32, n_heads: int = 4, n_blocks: int = 1, hidden: int = 256, n_layers: int = 2,
                 dropout: float = 0.0,
                 use_covariates: bool = True, init_locations: bool = True, use_context: bool = True,
                 match_groups: int = 10, min_group_cells: int = 5, min_group_share: float = 0.5,
                 critic_components: int | None = None,
                 max_epochs: int = 30, batch_size: int = 64, lr_generator: float = 2e-4,
                 lr_discriminator: float = 4e-4, lr_tables: float = 2e-3, n_critic: int = 1,
                 gp_weight: float = 10.0, cycle_weight: float = 10.0, identity_weight: float = 10.0,
                 classifier_weight: float = 1.0, correction_weight: float = 0.0, epoch_cells: int | None = None,
                 val_fraction: float = 0.1, patience: int | None = 10, mixed_precision: bool = False) -> None:
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
        self.network = CGANGenerator(self.n_features, self.n_conditions, self.covariate_names,
                                     gan_features=self.config["gan_features"], output=self.output_mode,
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
        with seeded(seed, z.device):
            self._build()
        self.network.to(z.device)
        self.network.prepare(z)
        known = labels.context is not None and self.config["use_context"]
        share = 0.0 if known else float(self.config["min_group_share"])  # contexts are real pairings
        if known:
            groups = labels.context.to(z.device)
        elif self.config["match_groups"]:
            groups = pseudo_contexts(z.index_select(1, self.network.gan_index), target, self.config["match_groups"],
                                     seed=seed)
        else:
            groups = None
        if self.config["init_locations"]:
            self.network.prepare(z, condition_offsets(z, target, groups, self.n_conditions, balanced=True,
                                                        min_share=share))
        self.network.embed.fit_covariates(target, covariates)
        keys = set(GANOptions.__dataclass_fields__)
        options = GANOptions(**{**{k: v for k, v in self.config.items() if k in keys}, "min_group_share": share})
        history, _ = train_cgan(self.network, z, target, covariates, n_conditions=self.n_conditions, options=options,
                                groups=groups, feature_index=self.network.gan_index,
                                discriminator_kwargs={**self._architecture(),
                                                      "n_components": self.config["critic_components"]},
                                seed=seed, progress=progress, checkpoint_dir=checkpoint_dir)
        self.history = history.to_dict()
        self.training_history = history.record()
        self.network.eval()

    # -- prediction -----------------------------------------------------------------------------
    def _manipulate(self, z, condition, *, n_samples, generator):
        if condition.source is None:
            raise ValueError("cgan needs condition.source (the condition each cell is in now); pipelines pass it "
                             "from the condition column or the control label.")
        covariates = {k: v for k, v in condition.covariates.items() if k in self.covariate_names}
        rows = torch.arange(z.shape[0], device=z.device)

        def move(index: torch.Tensor) -> torch.Tensor:
            return self.network(z[index], condition.source[index], condition.target[index],
                                {k: v[index] for k, v in covariates.items()})

        with torch.no_grad():
            out = batched_apply(move, rows, batch_size=2048)
        return repeat_samples(out, n_samples)

    def rollout(self, z: torch.Tensor, conditions: Sequence[int] | Sequence[Condition], *, source: int) -> torch.Tensor:
        """Walk cells ``z`` [n, d], now in condition ``source``, through ``conditions``: [steps, n, d].

        Each entry is a condition id (every cell moved there; the model's fitted covariate means
        for that condition fill in dose / time) or a full :class:`Condition` for the step (its
        ``source`` defaults to the previous step's target). Step ``k`` moves the output of step
        ``k - 1``; the first step moves ``z``.
        """
        self._check_fitted()
        if len(conditions) == 0:
            raise ValueError("rollout needs at least one condition to move to.")
        steps, current = [], z
        previous = torch.full((z.shape[0],), int(source), dtype=torch.long, device=z.device)
        for entry in conditions:
            if isinstance(entry, Condition):
                step = entry if entry.source is not None else Condition(entry.target, previous, entry.context,
                                                                        entry.covariates)
            else:
                step = Condition.constant(z.shape[0], int(entry), source=previous)
            current = self.manipulate(current, step)
            previous = step.target.to(z.device)
            steps.append(current)
        return torch.stack(steps)
