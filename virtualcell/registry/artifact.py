"""The component artifact: a folder, no pickle.

```
<component>/  config.json          registered name, package + version, format version, init
                                   arguments, fitted state, sha256 of every other file
              weights.safetensors  parameters and buffers
              features.txt         input (encoder) or output (decoder) feature order
              README.md            model card with YAML front matter
```
Loading resolves the class only through the registry, so an artifact can never name code to
import; any file edited after saving is caught by its checksum.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from .registry import UnknownComponentError, registry

__all__ = ["save_component", "load_component", "read_config", "TamperedArtifactError", "ArtifactError",
           "FORMAT_VERSION", "sha256_file", "atomic_directory"]

FORMAT_VERSION = 1
CONFIG, WEIGHTS, FEATURES, CARD = "config.json", "weights.safetensors", "features.txt", "README.md"


class ArtifactError(ValueError):
    """An artifact folder that cannot be read."""


class TamperedArtifactError(ArtifactError):
    """A file of an artifact changed after it was saved."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _canonical_hash(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def package_version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


class atomic_directory:
    """Write a folder under a temporary name and move it into place only when complete.

    ``with atomic_directory(path, overwrite=False) as tmp: ...`` — on error nothing at ``path``
    changes; with ``overwrite`` an existing folder is replaced only after the new one is whole.
    """

    def __init__(self, path: str | Path, *, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.overwrite = overwrite

    def __enter__(self) -> Path:
        if self.path.exists() and not self.overwrite:
            raise FileExistsError(f"{self.path} already exists; pass overwrite=True to replace it.")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        old = None
        if self.path.exists():
            old = self.path.with_name(f".{self.path.name}.old-{os.getpid()}")
            os.replace(self.path, old)
        os.replace(self.tmp, self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _tensors_of(component: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in component.state_dict().items()}


def save_component(component, path: str | Path, *, card: Mapping[str, Any] | None = None,
                   overwrite: bool = False) -> Path:
    """Save ``component`` as an artifact folder at ``path`` (atomic); returns the path."""
    from safetensors.torch import save_file

    from .model_card import render_model_card

    component._check_fitted()
    name = registry.name_of(type(component))
    distribution = registry.distribution_of(name)
    features = list(component.features or [])
    bad = [f for f in features if "\n" in f or "\r" in f]
    if bad:
        raise ArtifactError(f"Feature names may not contain line breaks: {bad[:5]}")
    path = Path(path)
    with atomic_directory(path, overwrite=overwrite) as tmp:
        save_file(_tensors_of(component), str(tmp / WEIGHTS), metadata={"format": "pt"})
        (tmp / FEATURES).write_text("".join(f"{f}\n" for f in features), encoding="utf-8")
        config = {
            "format_version": FORMAT_VERSION,
            "component": name,
            "kind": component.kind,
            "class": type(component).__name__,
            "package": distribution,
            "package_version": package_version(distribution) if distribution != "<runtime>" else "unknown",
            "virtualcell_version": package_version("virtualcell"),
            "init": component.config_dict(),
            "state": component.fitted_state(),
            "n_features": len(features),
            "checksums": {WEIGHTS: sha256_file(tmp / WEIGHTS), FEATURES: sha256_file(tmp / FEATURES)},
        }
        config["config_sha256"] = _canonical_hash(config)
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (tmp / CARD).write_text(render_model_card(config, features, card or {}), encoding="utf-8")
    return path


def read_config(path: str | Path, *, verify: bool = True) -> dict[str, Any]:
    """Read and check ``config.json`` of an artifact folder (format version, checksums)."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"{path} is not an artifact folder (expected a folder with {CONFIG}).")
    if not (path / CONFIG).exists():
        raise ArtifactError(f"{path} has no {CONFIG}; found {sorted(p.name for p in path.iterdir())}.")
    try:
        config = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise TamperedArtifactError(f"{path / CONFIG} is not valid JSON ({error}); the artifact is damaged.") from None
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ArtifactError(f"{path} uses artifact format {version!r}; this virtualcell reads up to "
                            f"{FORMAT_VERSION}. Upgrade virtualcell (pip install -U virtualcell).")
    if verify:
        expected = config.pop("config_sha256", None)
        if expected != _canonical_hash(config):
            raise TamperedArtifactError(f"{path / CONFIG} was edited after the artifact was saved "
                                        "(its content hash does not match). Re-save or re-pull the artifact.")
        config["config_sha256"] = expected
        for filename, digest in config.get("checksums", {}).items():
            if not (path / filename).exists():
                raise TamperedArtifactError(f"{path} is missing {filename}; the artifact is incomplete.")
            if sha256_file(path / filename) != digest:
                raise TamperedArtifactError(f"{path / filename} was modified after the artifact was saved "
                                            "(sha256 mismatch). Re-save or re-pull the artifact.")
    return config


def _assign_tensors(component: torch.nn.Module, tensors: Mapping[str, torch.Tensor], where: Path) -> None:
    expected = set(component.state_dict())
    retired = getattr(component, "retired_tensors", frozenset())  # left by older versions of the component
    for key, tensor in tensors.items():
        if key in retired:
            continue
        module_path, _, attr = key.rpartition(".")
        try:
            module = component.get_submodule(module_path)
        except AttributeError:
            raise ArtifactError(f"{where}: weight {key!r} has no place in {type(component).__name__}.") from None
        if attr in module._parameters and module._parameters[attr] is not None:
            param = module._parameters[attr]
            if param.shape != tensor.shape:
                raise ArtifactError(f"{where}: weight {key!r} has shape {tuple(tensor.shape)} but the model "
                                    f"expects {tuple(param.shape)}; the config and weights disagree.")
            with torch.no_grad():
                param.copy_(tensor)
        elif attr in module._buffers or attr in module._parameters:
            module._buffers.pop(attr, None)
            module._parameters.pop(attr, None)
            module.register_buffer(attr, tensor)
        else:
            raise ArtifactError(f"{where}: weight {key!r} has no place in {type(component).__name__}.")
    missing = sorted(expected - set(tensors))
    if missing:
        raise ArtifactError(f"{where}: weights missing for {missing[:10]}; the artifact is incomplete.")


def load_component(path: str | Path, *, device: str | torch.device = "cpu"):
    """Load the component saved at ``path`` (class resolved through the registry) onto ``device``."""
    from safetensors.torch import load_file

    path = Path(path)
    config = read_config(path)
    try:
        cls = registry.get(config["component"])
    except UnknownComponentError as error:
        raise UnknownComponentError(
            f"{path} was saved from component {config['component']!r} of package "
            f"{config.get('package')!r} {config.get('package_version')!r}, which is not installed here. "
            f"Install that package. ({error})"
        ) from None
    component = cls.from_config(config.get("init", {}))
    component.load_fitted_state(config.get("state", {}))
    component.features = (path / FEATURES).read_text(encoding="utf-8").splitlines()
    _assign_tensors(component, load_file(str(path / WEIGHTS)), path)
    component.is_fitted = True
    component.eval()
    return component.to(device)
