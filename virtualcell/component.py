"""Components: torch modules with a frozen config, a feature list and an artifact format.

Three kinds plug into a pipeline (docs/architecture.md):

- ``Encoder.encode(x [n, genes]) -> z [n, d]``       with ``input_features`` and ``n_latent``
- ``Manipulator.manipulate(z [n, d], condition) -> z' [n, d] | [n_samples, n, d]``
- ``Decoder.decode(z [n, d]) -> [n, outputs]``       with ``output_features``

Components see tensors and feature names only; AnnData and strings stay at the edge.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from .config import Configurable
from .nn.group_means import GroupPlan

__all__ = ["Component", "Encoder", "Manipulator", "Decoder", "Condition", "NotFittedError", "KINDS"]

KINDS = ("encoder", "manipulator", "decoder")
C = TypeVar("C", bound="Component")


class NotFittedError(RuntimeError):
    """A component was used before ``fit`` (or ``load``)."""


class Component(nn.Module, Configurable):
    """Base of every encoder, manipulator and decoder.

    Fitted state lives in three places, all saved by :meth:`save`: tensors (parameters and
    buffers) in ``weights.safetensors``; the ordered feature names in ``features.txt``; small JSON
    facts learned by ``fit`` (sizes, vocabularies) returned by :meth:`fitted_state` and restored by
    :meth:`load_fitted_state`, which must rebuild any sub-module whose shape depends on the data.
    """

    kind: ClassVar[str] = "component"
    #: tensor names older versions of this class saved and this one no longer has (skipped on load)
    retired_tensors: ClassVar[frozenset[str]] = frozenset()
    #: tensors in which a whole row of NaN marks an entry without data; any other NaN or infinity is
    #: refused on save and on load (a re-sealed artifact with NaN weights)
    nan_marked_tensors: ClassVar[frozenset[str]] = frozenset()

    def __init__(self) -> None:
        super().__init__()
        self.features: list[str] | None = None
        self.is_fitted: bool = False
        #: what training recorded (``History.record()``: per-epoch losses, which epoch's weights were
        #: kept); saved as ``history.json`` in the artifact; None for components fitted in one pass
        self.training_history: dict[str, Any] | None = None
        #: a few JSON facts about the last training (epochs, seconds, ...), saved as ``state["training"]``
        self.training_summary: dict[str, Any] = {}

    # -- fitted state ---------------------------------------------------------------------------
    def fitted_state(self) -> dict[str, Any]:
        """JSON facts learned by ``fit`` beyond tensors (override and call super)."""
        return {"training": dict(self.training_summary)} if self.training_summary else {}

    def load_fitted_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`fitted_state` returned; build data-shaped sub-modules here."""
        self.training_summary = dict(state.get("training", {}))

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted yet: call .fit(...) or load a saved one.")

    @property
    def device(self) -> torch.device:
        for tensor in list(self.parameters()) + list(self.buffers()):
            return tensor.device
        return torch.device("cpu")

    # -- artifacts -------------------------------------------------------------------------------
    def save(self, path: str | Path, *, card: Mapping[str, Any] | None = None, overwrite: bool = False) -> Path:
        """Write the artifact folder (config.json, weights.safetensors, features.txt, README.md) atomically."""
        from .registry import save_component

        return save_component(self, path, card=card, overwrite=overwrite)

    @classmethod
    def load(cls: type[C], path: str | Path, *, device: str | torch.device = "cpu") -> C:
        """Load an artifact folder; the class is resolved through the registry, never from the file."""
        from .registry import load_component

        component = load_component(path, device=device)
        if not isinstance(component, cls):
            raise TypeError(f"{path} holds a {type(component).__name__}, not a {cls.__name__}.")
        return component

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.items())


class Encoder(Component):
    """``encode(x [n, genes]) -> z [n, n_latent]``; ``input_features`` is the gene order it expects."""

    kind: ClassVar[str] = "encoder"

    @property
    def input_features(self) -> list[str]:
        self._check_fitted()
        return list(self.features or [])

    @property
    def n_latent(self) -> int:
        raise NotImplementedError

    def fit(self, x: torch.Tensor, features: Sequence[str], **kwargs: Any) -> "Encoder":
        """Learn the representation from ``x`` [n, genes] (columns named by ``features``)."""
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def paired_decoder(self) -> "Decoder | None":
        """The decoder trained with this encoder (its inverse), if it has one."""
        return None


class Decoder(Component):
    """``decode(z [n, d]) -> [n, outputs]``; ``output_features`` names the outputs (genes or classes)."""

    kind: ClassVar[str] = "decoder"
    #: what ``decode`` returns: "expression" (log-normalised, clipped at 0 by pipelines) or "logits"
    output_type: ClassVar[str] = "expression"
    #: registered name of the encoder that hands this decoder out (None: it fits on its own)
    paired_encoder: ClassVar[str | None] = None

    @property
    def output_features(self) -> list[str]:
        self._check_fitted()
        return list(self.features or [])

    def fit(self, z: torch.Tensor, x: torch.Tensor, features: Sequence[str], **kwargs: Any) -> "Decoder":
        """Learn to map ``z`` [n, d] to ``x`` [n, outputs]; decoders paired with an encoder need no fit."""
        raise NotImplementedError(f"{type(self).__name__} is built from its encoder and cannot be fitted alone.")

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Condition:
    """Integer-coded conditions for ``n`` cells.

    Attributes:
        target: [n] long, the condition each cell is in (``fit``) or should be moved to (``manipulate``).
        source: [n] long or None, the condition each cell is in now (``manipulate`` only).
        context: [n] long or None, the context (cell type) of each cell, when known.
        covariates: name -> [n] float tensor (``dose``, ``time``), when known.
    """

    target: torch.Tensor
    source: torch.Tensor | None = None
    context: torch.Tensor | None = None
    covariates: Mapping[str, torch.Tensor] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.target.shape[0]
        for name in ("source", "context"):
            value = getattr(self, name)
            if value is not None and value.shape[0] != n:
                raise ValueError(f"Condition.{name} has {value.shape[0]} entries but target has {n}.")
        for name, value in self.covariates.items():
            if value.shape[0] != n:
                raise ValueError(f"Condition covariate {name!r} has {value.shape[0]} entries but target has {n}.")

    def __len__(self) -> int:
        return int(self.target.shape[0])

    @classmethod
    def constant(cls, n: int, target: int, *, source: int | torch.Tensor | None = None,
                 context: torch.Tensor | None = None, covariates: Mapping[str, torch.Tensor] | None = None) -> "Condition":
        """Every one of ``n`` cells moved to ``target`` (from ``source``)."""
        full = lambda v: None if v is None else (v if isinstance(v, torch.Tensor) else torch.full((n,), int(v)))
        return cls(torch.full((n,), int(target)), full(source), context, dict(covariates or {}))

    def subset(self, rows: torch.Tensor | slice) -> "Condition":
        pick = lambda v: None if v is None else v[rows]
        return Condition(self.target[rows], pick(self.source), pick(self.context),
                         {k: v[rows] for k, v in self.covariates.items()})

    def to(self, device: torch.device | str) -> "Condition":
        move = lambda v: None if v is None else v.to(device)
        return Condition(self.target.to(device), move(self.source), move(self.context),
                         {k: v.to(device) for k, v in self.covariates.items()})


class Manipulator(Component):
    """Moves representations from one condition to another.

    ``fit(z, labels)`` learns from cells ``z`` [n, d] whose observed conditions are ``labels.target``.
    ``manipulate(z, condition, n_samples=1, generator=None)`` returns ``z'`` [n, d] for
    ``n_samples == 1`` and [n_samples, n, d] otherwise. Deterministic manipulators return identical
    samples (their uncertainty is zero); stochastic ones set ``stochastic = True``.
    Subclasses implement ``_fit`` and ``_manipulate`` (which always returns [n_samples, n, d]).
    """

    kind: ClassVar[str] = "manipulator"
    stochastic: ClassVar[bool] = False
    #: per-condition means: a NaN row marks a condition that had no cells in ``fit``
    nan_marked_tensors: ClassVar[frozenset[str]] = frozenset({"condition_means"})
    #: whether ``fit`` needs ``labels.context``; False means it may use it when given
    requires_context: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.n_conditions: int = 0
        self.n_contexts: int = 0
        self.n_features: int = 0

    def fitted_state(self) -> dict[str, Any]:
        return {**super().fitted_state(), "n_conditions": self.n_conditions,
                "n_contexts": self.n_contexts, "n_features": self.n_features}

    def load_fitted_state(self, state: Mapping[str, Any]) -> None:
        super().load_fitted_state(state)
        self.n_conditions = int(state["n_conditions"])
        self.n_contexts = int(state["n_contexts"])
        self.n_features = int(state["n_features"])

    def fit(self, z: torch.Tensor, labels: Condition, *, n_conditions: int | None = None,
            n_contexts: int | None = None, features: Sequence[str] | None = None,
            seed: int = 0, progress: bool = True, **kwargs: Any) -> "Manipulator":
        """Learn from ``z`` [n, d] in conditions ``labels.target`` [n] (ids < ``n_conditions``)."""
        if z.ndim != 2 or z.shape[0] != len(labels):
            raise ValueError(f"fit expects z [n, d] with one label per row; got z {tuple(z.shape)} and {len(labels)} labels.")
        self._record(z, labels, n_conditions, n_contexts, features)
        self._fit(z, labels, seed=seed, progress=progress, **kwargs)
        self.is_fitted = True
        return self

    def group_plan(self, labels: Condition, *, n_conditions: int, n_contexts: int, seed: int = 0) -> GroupPlan | None:
        """Hook: which group each cell's code adds to when ``fit`` needs only per-group sums of the codes; None
        (default): every code. ``GroupSumsManipulator`` subclasses return one and fit from the sums (``fit_sums``)."""
        return None

    def _record(self, values: torch.Tensor, labels: Condition, n_conditions: int | None, n_contexts: int | None,
                features: Sequence[str] | None) -> None:   # fit's checks and sizes; values: the codes or their sums
        if not torch.isfinite(values).all():
            raise ValueError("fit got non-finite values (NaN or inf) in z; clean the input data first.")
        if self.requires_context and labels.context is None:
            raise ValueError(f"{type(self).__name__} needs the context (cell type) of each cell; pass context_key.")
        self.n_conditions = int(n_conditions if n_conditions is not None else int(labels.target.max()) + 1)
        self.n_contexts = int(n_contexts if n_contexts is not None else
                              (int(labels.context.max()) + 1 if labels.context is not None else 0))
        self.n_features = int(values.shape[1])
        self.features = list(features) if features is not None else [f"latent_{i}" for i in range(self.n_features)]

    def prepare_conditions(self, labels: Sequence[str], *, x: torch.Tensor, z: torch.Tensor, genes: Sequence[str],
                           condition_ids: torch.Tensor) -> list[str]:
        """Hook a pipeline calls before ``fit``: the condition names to fit, observed ``labels`` first.

        ``x`` [n, genes] and ``z`` [n, d] are the training cells, ``condition_ids`` [n] their ids in
        ``labels``. A manipulator that can predict conditions never observed (e.g. knockouts of genes
        of a network) appends their names; the default keeps ``labels`` as they are.
        """
        return list(labels)

    def coverage(self) -> str | None:
        """Hook: one line on what the manipulator can predict beyond the conditions it was fitted on
        (e.g. the genes of its network); None, the default, when it predicts those conditions only."""
        return None

    def was_seen(self, condition_id: int) -> bool | None:
        """Hook: whether condition ``condition_id`` had cells in ``fit`` (None, the default: not recorded)."""
        return None

    def _fit(self, z: torch.Tensor, labels: Condition, *, seed: int, progress: bool, **kwargs: Any) -> None:
        raise NotImplementedError

    def manipulate(self, z: torch.Tensor, condition: Condition, *, n_samples: int = 1,
                   generator: torch.Generator | None = None) -> torch.Tensor:
        """Move ``z`` [n, d] to ``condition.target``; returns [n, d] or [n_samples, n, d]."""
        self._check_fitted()
        if z.ndim != 2 or z.shape[1] != self.n_features:
            raise ValueError(f"{type(self).__name__} was fitted on {self.n_features} features; got z {tuple(z.shape)}.")
        if z.shape[0] != len(condition):
            raise ValueError(f"z has {z.shape[0]} rows but the condition has {len(condition)}.")
        for name in ("target", "source"):
            ids = getattr(condition, name)
            if ids is not None and len(ids) and (ids.min() < 0 or ids.max() >= self.n_conditions):
                raise ValueError(f"condition.{name} ids must lie in [0, {self.n_conditions}); got "
                                 f"[{int(ids.min())}, {int(ids.max())}]. Unknown condition?")
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1; got {n_samples}.")
        out = self._manipulate(z, condition.to(z.device), n_samples=n_samples, generator=generator)
        return out[0] if n_samples == 1 else out

    def _manipulate(self, z: torch.Tensor, condition: Condition, *, n_samples: int,
                    generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError
