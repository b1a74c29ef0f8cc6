"""Pipeline: a named set of components saved as one folder.

```
<pipeline>/  pipeline.json   class, format version, component folder names, edge metadata,
                             sha256 of each tensor file, hash
             <name>/         one artifact folder per component
             *.safetensors   the pipeline's own tensors, if any (e.g. response_means.safetensors)
             README.md       model card
```
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..component import Component
from ..execution import resolve_device

__all__ = ["Pipeline", "resolve_component", "PIPELINE_FILE"]

PIPELINE_FILE = "pipeline.json"
PIPELINE_FORMAT = 1


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
        raise TypeError(f"{type(component).__name__} is a {component.kind}, not a {kind}.")
    return component


def _hash(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class Pipeline:
    """Components by role (``encoder``, ``manipulator``, ``decoder``) plus JSON ``metadata``."""

    roles: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **components: Component | None) -> None:
        self.components: dict[str, Component | None] = dict(components)
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
        """Save every component and ``pipeline.json`` into one folder (atomic)."""
        from ..registry.artifact import atomic_directory, package_version

        path = Path(path)
        with atomic_directory(path, overwrite=overwrite) as tmp:
            names = {}
            for role, component in self.components.items():
                if component is not None:
                    component.save(tmp / role, card=card)
                    names[role] = role
            spec = {"format_version": PIPELINE_FORMAT, "class": type(self).__name__, "components": names,
                    "metadata": self.metadata, "virtualcell_version": package_version("virtualcell")}
            files = self._tensor_files()
            if files:
                from safetensors.torch import save_file

                from ..registry.artifact import sha256_file

                for filename, tensors in files.items():
                    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / filename))
                spec["tensor_files"] = {filename: sha256_file(tmp / filename) for filename in files}
            spec["sha256"] = _hash(spec)
            (tmp / PIPELINE_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            (tmp / "README.md").write_text(self._card(names, card or {}), encoding="utf-8")
        return path

    def _card(self, names: Mapping[str, str], card: Mapping[str, Any]) -> str:
        rows = "\n".join(f"| {role} | `{self.components[role].config_json()}` |".replace("\n", " ") for role in names)
        return (f"---\nlibrary_name: virtualcell\npipeline: {type(self).__name__}\n---\n\n# {type(self).__name__}\n\n"
                f"{card.get('description', '')}\n\n| role | config |\n|---|---|\n{rows}\n")

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device = "cpu") -> "Pipeline":
        """Load a pipeline folder; each component is resolved through the registry."""
        from ..registry.artifact import ArtifactError, TamperedArtifactError, load_component

        path = Path(path)
        file = path / PIPELINE_FILE
        if not file.exists():
            raise ArtifactError(f"{path} is not a pipeline folder (no {PIPELINE_FILE}).")
        try:
            spec = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise TamperedArtifactError(f"{file} is not valid JSON ({error}).") from None
        if spec.get("format_version", 0) > PIPELINE_FORMAT:
            raise ArtifactError(f"{path} uses pipeline format {spec['format_version']}; upgrade virtualcell.")
        digest = spec.pop("sha256", None)
        if digest != _hash(spec):
            raise TamperedArtifactError(f"{file} was edited after the pipeline was saved (hash mismatch). Re-save it.")
        if spec["class"] != cls.__name__ and cls is not Pipeline:
            raise ArtifactError(f"{path} holds a {spec['class']}, not a {cls.__name__}.")
        pipeline = cls.__new__(cls)
        Pipeline.__init__(pipeline, **{role: load_component(path / folder, device=device)
                                       for role, folder in spec["components"].items()})
        pipeline.metadata = spec["metadata"]
        pipeline._load_tensor_files(_read_tensor_files(path, spec.get("tensor_files", {})))
        pipeline._after_load()
        pipeline.device = resolve_device(device)
        return pipeline

    def _after_load(self) -> None:
        """Rebuild derived state from ``metadata`` (subclasses)."""

    def _tensor_files(self) -> dict[str, dict[str, torch.Tensor]]:
        """The pipeline's own tensors to save, ``{filename: {name: tensor}}`` (subclasses; default none)."""
        return {}

    def _load_tensor_files(self, files: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        """Restore what :meth:`_tensor_files` saved (``{}`` for an artifact saved without them)."""


def _read_tensor_files(path: Path, checksums: Mapping[str, str]) -> dict[str, dict[str, torch.Tensor]]:
    """The tensor files listed in ``pipeline.json``, each checked against its recorded sha256 (CPU tensors)."""
    from safetensors.torch import load_file

    from ..registry.artifact import TamperedArtifactError, sha256_file

    files = {}
    for filename, digest in checksums.items():
        file = path / filename
        if Path(filename).name != filename:
            raise TamperedArtifactError(f"{path / PIPELINE_FILE} names tensor file {filename!r} outside the folder.")
        if not file.exists():
            raise TamperedArtifactError(f"{path} is missing {filename}; the pipeline artifact is incomplete.")
        if sha256_file(file) != digest:
            raise TamperedArtifactError(f"{file} was modified after the pipeline was saved (sha256 mismatch). "
                                        "Re-save or re-pull the pipeline.")
        files[filename] = load_file(str(file))
    return files
