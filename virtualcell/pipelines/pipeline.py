"""Pipeline: a named set of parts (components, or pipelines for an ensemble) saved as one folder.

The folder format (``pipeline.json`` with its Merkle record) is :mod:`virtualcell.registry.pipeline_format`,
the same for every pipeline kind. Loading recomputes the Merkle record from the folder, so a part
swapped in from another pipeline is refused, and checks that each role holds the kind it is named for.
``Pipeline.load(path)`` reads any kind: it hands the folder to the subclass named in ``pipeline.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..component import KINDS, Component
from ..execution import resolve_device
from ..registry.pipeline_format import PIPELINE_FILE, PIPELINE_FORMAT, PIPELINE_KIND

__all__ = ["Pipeline", "resolve_component", "PIPELINE_FILE", "PIPELINE_FORMAT", "PIPELINE_KIND"]


def resolve_component(spec: "str | Mapping[str, Any] | Component | None", kind: str) -> Component | None:
    """A component from a registered name, ``{"name": ..., **init_kwargs}`` or an instance."""
    from ..registry import registry

    if spec is None or isinstance(spec, Component):
        component = spec
    elif isinstance(spec, str):
        component = registry.create(spec)
    elif isinstance(spec, Mapping):
        spec = dict(spec)
        component = registry.create(spec.pop("name"), **spec)
    else:
        raise TypeError(f"{kind} must be a registered name, a dict with 'name', or a component; got {type(spec).__name__}.")
    if component is not None and component.kind != kind:
        raise TypeError(f"{type(component).__name__} is a {component.kind}, not {'an' if kind == 'encoder' else 'a'} {kind}.")
    return component


class Pipeline:
    """Parts by role (``encoder``, ``manipulator``, ``decoder``; an ensemble's members) plus JSON ``metadata``."""

    roles: ClassVar[tuple[str, ...]] = ()
    #: what a part of kind "pipeline" records; a pipeline is itself a part of an ensemble
    kind: ClassVar[str] = PIPELINE_KIND
    #: every Pipeline class by the name ``pipeline.json`` records (filled as subclasses are defined)
    classes: ClassVar[dict[str, type["Pipeline"]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Pipeline.classes[cls.__name__] = cls

    def __init__(self, **components: "Component | Pipeline | None") -> None:
        self.components: dict[str, Component | Pipeline | None] = dict(components)
        self.metadata: dict[str, Any] = {}

    def __getattr__(self, name: str):
        components = self.__dict__.get("components", {})
        if name in components:
            return components[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def to(self, device: str | torch.device) -> "Pipeline":
        device = resolve_device(device)
        for component in self.components.values():
            if component is not None:
                component.to(device)
        self.device = device
        return self

    # -- artifacts -------------------------------------------------------------------------------
    def save(self, path: str | Path, *, overwrite: bool = False, card: Mapping[str, Any] | None = None) -> Path:
        """Save every part and ``pipeline.json`` (with its Merkle record) into one folder, crash-safely."""
        from ..registry.artifact import atomic_directory
        from ..registry.limits import save_safetensors
        from ..registry.names import check_segment
        from ..registry.pipeline_format import write_spec

        path = Path(path)
        present = {role: c for role, c in self.components.items() if c is not None}
        for role, part in present.items():
            check_segment(role, "pipeline role")
            type(self).check_part(role, part.kind, path)
        with atomic_directory(path, overwrite=overwrite) as tmp:
            for role, part in present.items():
                part.save(tmp / role, card=card)
            files = self._tensor_files()
            for filename, tensors in files.items():
                check_segment(filename, "tensor file")
                save_safetensors({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp / filename)
            write_spec(tmp, cls=type(self).__name__, kinds={role: part.kind for role, part in present.items()},
                       metadata=self.metadata, tensor_files=list(files), fields=self._fields())
            (tmp / "README.md").write_text(self._card(list(present), card or {}), encoding="utf-8")
        return path

    def _card(self, roles: list[str], card: Mapping[str, Any]) -> str:
        from ..registry.model_card import render_card_sections

        rows = "\n".join(f"| {role} | `{self.components[role].config_json()}` |".replace("\n", " ") for role in roles)
        return (f"---\nlibrary_name: virtualcell\npipeline: {type(self).__name__}\n---\n\n# {type(self).__name__}\n\n"
                f"{card.get('description', '')}\n\n| role | config |\n|---|---|\n{rows}\n\n{render_card_sections(card)}")

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device = "cpu") -> "Pipeline":
        """Load a pipeline folder: every file checked against its Merkle record, each role's kind checked,
        each part resolved through the registry (or loaded as a pipeline). ``Pipeline.load`` reads any kind."""
        from ..registry.atomic import recover
        from ..registry.errors import ArtifactError
        from ..registry.pipeline_format import check_spec, is_legacy, read_record

        path = Path(path)
        recover(path)
        record = read_record(path)
        named = record.get("class")
        if cls is Pipeline and isinstance(named, str) and Pipeline.classes.get(named, Pipeline) is not Pipeline:
            return Pipeline.classes[named].load(path, device=device)
        if cls is not Pipeline and isinstance(named, str) and named != cls.__name__:
            raise ArtifactError(f"{path} holds a {named}, not a {cls.__name__}; load it with "
                                "virtualcell.load_pipeline(path) (or virtualcell.selection.load_selected(path)), "
                                "which reads every pipeline kind.")
        if is_legacy(record):
            return cls._load_legacy(path, record, device)
        return cls._from_spec(path, check_spec(path, record), device)

    @classmethod
    def _load_legacy(cls, path: Path, record: Mapping[str, Any], device: str | torch.device) -> "Pipeline":
        """A record of an older layout (subclasses that had one); the default refuses it (re-save message)."""
        from ..registry.pipeline_format import check_spec

        check_spec(path, dict(record))      # raises, naming the fix
        raise AssertionError("unreachable")

    @classmethod
    def _from_spec(cls, path: Path, spec: Mapping[str, Any], device: str | torch.device) -> "Pipeline":
        from ..registry.errors import TamperedArtifactError
        from ..registry.pipeline_format import own_fields, read_tensor_files, verify

        roles = spec["components"]
        kinds = spec.get("kinds", {})
        for role in roles:
            cls.check_part(role, kinds.get(role), path)
        verify(path, spec, stacklevel=4)
        parts = {}
        for role, folder in roles.items():
            part = cls._load_part(path / folder, kinds.get(role), device)
            recorded = kinds.get(role)
            if recorded is not None and part.kind != recorded:
                raise TamperedArtifactError(f"The {role} of {path} holds a {part.kind}, but the pipeline "
                                            f"was saved with a {recorded} there; the folder was swapped.")
            cls.check_part(role, part.kind, path)
            parts[role] = part
        pipeline = cls.__new__(cls)
        Pipeline.__init__(pipeline, **parts)
        pipeline.metadata = spec["metadata"]
        pipeline._load_tensor_files(read_tensor_files(path, spec.get("tensor_files", {})))
        pipeline._load_fields(own_fields(spec), path)
        pipeline._after_load()
        pipeline.device = resolve_device(device)
        return pipeline

    @staticmethod
    def _load_part(folder: Path, kind: str | None, device: str | torch.device) -> "Component | Pipeline":
        """A part folder: a pipeline (kind ``"pipeline"``, any class) or a component through the registry."""
        if kind == PIPELINE_KIND:
            return Pipeline.load(folder, device=device)
        from ..registry import load_component

        return load_component(folder, device=device)

    @classmethod
    def check_part(cls, role: str, kind: str | None, path: Path) -> None:
        """A role named for a kind (``encoder``, ...) holds that kind; a class with ``roles`` has no others."""
        from ..registry.errors import ArtifactError

        if cls.roles and role not in cls.roles:
            raise ArtifactError(f"{path}: {cls.__name__} has roles {list(cls.roles)}, not {role!r}.")
        if role in KINDS and kind is not None and kind != role:
            raise ArtifactError(f"{path}: the {role} role holds a component of kind {kind}; a {cls.__name__}'s "
                                f"{role} must be of kind {role}.")

    def _after_load(self) -> None:
        """Rebuild derived state from ``metadata`` (subclasses)."""

    def _fields(self) -> dict[str, Any]:
        """The pipeline kind's own fields of ``pipeline.json`` (subclasses; default none)."""
        return {}

    def _load_fields(self, fields: Mapping[str, Any], path: Path) -> None:
        """Restore what :meth:`_fields` saved (subclasses; the record's hash was checked)."""

    def _tensor_files(self) -> dict[str, dict[str, torch.Tensor]]:
        """The pipeline's own tensors to save, ``{filename: {name: tensor}}`` (subclasses; default none)."""
        return {}

    def _load_tensor_files(self, files: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        """Restore what :meth:`_tensor_files` saved (``{}`` for an artifact saved without them)."""
