"""Pipeline: a named set of components saved as one folder.

```
<pipeline>/  pipeline.json   class, format version, component folder names and kinds, edge metadata,
                             a Merkle record (sha256 of every file of every component -> one hash
                             per component -> the pipeline hash), hash of the whole record
             <role>/         one artifact folder per component
             *.safetensors   the pipeline's own tensors, if any (e.g. response_means.safetensors)
             README.md       model card
```
Loading recomputes the Merkle record from the folder, so a component folder swapped in from another
pipeline is refused, and checks that each role holds the kind of component it is named for.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..component import KINDS, Component
from ..execution import resolve_device

__all__ = ["Pipeline", "resolve_component", "PIPELINE_FILE"]

PIPELINE_FILE = "pipeline.json"
PIPELINE_FORMAT = 2   # 2: Merkle record and kinds (1 is still read, with a warning)


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
        """Save every component and ``pipeline.json`` (with its Merkle record) into one folder, crash-safely."""
        from ..registry import merkle
        from ..registry.artifact import atomic_directory, package_version
        from ..registry.names import check_segment

        path = Path(path)
        present = {role: c for role, c in self.components.items() if c is not None}
        for role, component in present.items():
            check_segment(role, "pipeline role")
            _check_kind(type(self), role, component.kind, path)
        with atomic_directory(path, overwrite=overwrite) as tmp:
            for role, component in present.items():
                component.save(tmp / role, card=card)
            names = {role: role for role in present}
            spec = {"format_version": PIPELINE_FORMAT, "class": type(self).__name__, "components": names,
                    "kinds": {role: c.kind for role, c in present.items()},
                    "metadata": self.metadata, "virtualcell_version": package_version("virtualcell")}
            files = self._tensor_files()
            if files:
                from ..registry.artifact import sha256_file
                from ..registry.limits import save_safetensors

                for filename, tensors in files.items():
                    check_segment(filename, "tensor file")
                    save_safetensors({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp / filename)
                spec["tensor_files"] = {filename: sha256_file(tmp / filename) for filename in files}
            spec["merkle"] = merkle.build(tmp, names, files)
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
        """Load a pipeline folder: every file checked against its Merkle record, each role's kind checked,
        each component resolved through the registry."""
        from ..registry import load_component
        from ..registry.atomic import recover
        from ..registry.errors import ArtifactError, TamperedArtifactError

        path = Path(path)
        recover(path)
        spec = _read_spec(path)
        if spec["class"] != cls.__name__ and cls is not Pipeline:
            raise ArtifactError(f"{path} holds a {spec['class']}, not a {cls.__name__}.")
        roles = spec["components"]
        for role in roles:
            _check_kind(cls, role, spec.get("kinds", {}).get(role), path)
        if spec["format_version"] >= 2:
            from ..registry import merkle

            merkle.verify(path, spec.get("merkle"), roles, spec.get("tensor_files", {}))
        else:
            warnings.warn(f"{path} was saved before pipelines recorded their components' hashes (format 1), so "
                          "a swapped component folder cannot be detected. Re-save it to upgrade.", stacklevel=2)
        components = {}
        for role, folder in roles.items():
            component = load_component(path / folder, device=device)
            recorded = spec.get("kinds", {}).get(role)
            if recorded is not None and component.kind != recorded:
                raise TamperedArtifactError(f"The {role} of {path} holds a {component.kind}, but the pipeline "
                                            f"was saved with a {recorded} there; the folder was swapped.")
            _check_kind(cls, role, component.kind, path)
            components[role] = component
        pipeline = cls.__new__(cls)
        Pipeline.__init__(pipeline, **components)
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


def _check_kind(cls: type, role: str, kind: str | None, path: Path) -> None:
    """A role named for a kind (``encoder``, ...) holds that kind; a class with ``roles`` has no others."""
    from ..registry.errors import ArtifactError

    if cls.roles and role not in cls.roles:
        raise ArtifactError(f"{path}: {cls.__name__} has roles {list(cls.roles)}, not {role!r}.")
    if role in KINDS and kind is not None and kind != role:
        raise ArtifactError(f"{path}: the {role} role holds a component of kind {kind}; a {cls.__name__}'s {role} must be of kind {role}.")


def _read_spec(path: Path) -> dict[str, Any]:
    """``pipeline.json``, size-limited and checked: its own hash, format version, component names."""
    from ..registry.errors import ArtifactError, TamperedArtifactError
    from ..registry.limits import read_json
    from ..registry.names import UnsafeNameError, check_segment

    file = path / PIPELINE_FILE
    if not file.is_file():
        raise ArtifactError(f"{path} is not a pipeline folder (no {PIPELINE_FILE}).")
    spec = read_json(file)
    if isinstance(spec, dict) and spec.get("class") == "EnsemblePipeline":
        raise ArtifactError(f"{path} holds an EnsemblePipeline (what `virtualcell select` saves when the ensemble or "
                            "a +spread entry wins); load it with virtualcell.evaluate.select.load_selected(path).")
    if not isinstance(spec, dict) or not isinstance(spec.get("components"), dict) or "class" not in spec:
        raise TamperedArtifactError(f"{file} is not a pipeline record (no 'class' / 'components'); it is damaged.")
    version = spec.get("format_version", 0)
    if not isinstance(version, int) or version > PIPELINE_FORMAT:
        raise ArtifactError(f"{path} uses pipeline format {version!r}; upgrade virtualcell (pip install -U virtualcell).")
    digest = spec.pop("sha256", None)
    if digest != _hash(spec):
        raise TamperedArtifactError(f"{file} was edited after the pipeline was saved (hash mismatch). Re-save it.")
    spec["sha256"] = digest
    try:
        for role, folder in spec["components"].items():
            check_segment(role, "pipeline role")
            check_segment(folder, "component folder")
        for filename in spec.get("tensor_files", {}):
            check_segment(filename, "tensor file")
    except UnsafeNameError as error:
        raise TamperedArtifactError(f"{file}: {error}") from None
    return spec


def _read_tensor_files(path: Path, checksums: Mapping[str, str]) -> dict[str, dict[str, torch.Tensor]]:
    """The tensor files listed in ``pipeline.json``, each checked against its recorded sha256 (CPU tensors)."""
    from ..registry.errors import TamperedArtifactError
    from ..registry.hashing import sha256_file
    from ..registry.limits import load_safetensors
    from ..registry.names import check_segment

    files = {}
    for filename, digest in checksums.items():
        file = path / check_segment(filename, "tensor file")
        if file.is_symlink() or not file.is_file():
            raise TamperedArtifactError(f"{path} is missing {filename}; the pipeline artifact is incomplete.")
        if sha256_file(file) != digest:
            raise TamperedArtifactError(f"{file} was modified after the pipeline was saved (sha256 mismatch). "
                                        "Re-save or re-pull the pipeline.")
        files[filename] = load_safetensors(file)
    return files
