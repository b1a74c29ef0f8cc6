"""The component artifact: a folder, no pickle.

```
<component>/  config.json          registered name, package + version, format version, init
                                   arguments, fitted state, sha256 of every other file
              weights.safetensors  parameters and buffers
              features.txt         input (encoder) or output (decoder) feature order, one per line
              history.json         trained components: per-epoch losses, which epoch's weights were kept
              README.md            model card with YAML front matter
```
This module reads and writes the format only. The class behind a saved name comes from whoever
calls it (the registry, ``registry.py``), so an artifact can never name code to import and this
file imports nothing that imports components. Every file edited after saving is caught by its
checksum; every name read from a file is checked (``names.py``); hostile sizes are refused before
they are read (``limits.py``); writes replace folders crash-safely (``atomic.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from ..io import json_clean
from .atomic import atomic_directory, recover
from .errors import ArtifactError, TamperedArtifactError
from .hashing import canonical_hash, sha256_file
from .limits import load_safetensors, read_json, save_safetensors
from .names import UnsafeNameError, check_segment

__all__ = ["write_component", "read_component", "read_config", "TamperedArtifactError", "ArtifactError",
           "FORMAT_VERSION", "sha256_file", "atomic_directory", "package_version", "check_features",
           "nonfinite_tensor", "training_record", "HISTORY"]

#: the newest format this version reads; 2 adds history.json (written only with a training history,
#: so artifacts without one stay readable by older versions as format 1)
FORMAT_VERSION = 2
CONFIG, WEIGHTS, FEATURES, CARD, HISTORY = "config.json", "weights.safetensors", "features.txt", "README.md", "history.json"
_canonical_hash = canonical_hash  # older name, kept for callers


def package_version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def check_features(features: list[str]) -> None:
    """Feature names must survive one-per-line storage: strings without any line separator."""
    bad = [f for f in features if not isinstance(f, str) or (f and f.splitlines() != [f])]
    if bad:
        raise ArtifactError(f"Feature names may not contain line separators (\\n, \\r, \\x0b, \\x0c, \\x1c-\\x1e, "
                            f"\\x85, \\u2028, \\u2029); found {[repr(f) for f in bad[:5]]}. Rename those genes "
                            "(e.g. adata.var_names = adata.var_names.str.replace(r'\\s', '_', regex=True)).")


def _tensors_of(component: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in component.state_dict().items()}


def nonfinite_tensor(tensors: Mapping[str, torch.Tensor], nan_rows: frozenset[str] = frozenset()) -> str | None:
    """The first tensor holding NaN or infinity, or None.

    Tensors named in ``nan_rows`` (a component's ``nan_marked_tensors``) may hold whole rows of NaN,
    the mark of an entry without data (e.g. a condition without cells); nothing may hold infinity.
    """
    for key, tensor in tensors.items():
        if not tensor.is_floating_point() or tensor.numel() == 0 or bool(torch.isfinite(tensor).all()):
            continue
        if key in nan_rows and not bool(torch.isinf(tensor).any()):
            nan = torch.isnan(tensor).reshape(tensor.shape[0], -1)
            if bool((nan.all(1) | ~nan.any(1)).all()):
                continue
        return key
    return None


def training_record(history: Mapping[str, Any]) -> dict[str, Any]:
    """The ``training`` entry of ``config.json``: counts and which epoch's weights were saved, in words too."""
    n, best, kept = int(history.get("n_epochs", 0)), int(history.get("best_epoch", -1)), history.get("weights", "last")
    unit = history.get("unit", "epoch")
    epoch = int(history.get("weights_epoch", n - 1))
    monitor = history.get("monitor") or "the monitored loss"
    if kept == "best":
        which = f"the weights of {unit} {epoch + 1} of {n}, the best by {monitor} (restored at the end of training)"
    else:
        which = f"the weights of the last {unit} ({epoch + 1} of {n})"
        if best >= 0:
            which += f"; {monitor} was best at {unit} {best + 1}"
    summary = (f"Saved {which}. Per-{unit} losses are in {HISTORY} ({unit}s counted from 0 there); plot them with "
               "virtualcell.train.plot_history(folder, 'history.png').")
    return {"n_epochs": n, "best_epoch": best, "weights": kept, "weights_epoch": epoch, "unit": unit,
            "history": HISTORY, "summary": summary}


def write_component(component, path: str | Path, *, name: str, distribution: str,
                    card: Mapping[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Save ``component`` (registered as ``name`` by ``distribution``) as an artifact folder at ``path``."""
    from .model_card import render_model_card

    component._check_fitted()
    features = list(component.features or [])
    check_features(features)
    path = Path(path)
    tensors = _tensors_of(component)
    bad = nonfinite_tensor(tensors, getattr(component, "nan_marked_tensors", frozenset()))
    if bad is not None:
        raise ValueError(f"{type(component).__name__}'s tensor {bad!r} holds NaN or infinite values, so the saved "
                         "component could only predict NaN. Training probably diverged: fit again with a lower "
                         "learning rate or check the input for extreme values.")
    with atomic_directory(path, overwrite=overwrite) as tmp:
        save_safetensors(tensors, tmp / WEIGHTS, metadata={"format": "pt"})
        (tmp / FEATURES).write_text("".join(f"{f}\n" for f in features), encoding="utf-8")
        history = getattr(component, "training_history", None)
        if history:
            (tmp / HISTORY).write_text(json.dumps(json_clean(history), indent=1, allow_nan=False) + "\n", encoding="utf-8")
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
            "checksums": {name: sha256_file(tmp / name) for name in (WEIGHTS, FEATURES, HISTORY) if (tmp / name).is_file()},
        }
        if history:
            config["format_version"], config["training"] = 2, training_record(history)
        else:
            config["format_version"] = 1
        config["config_sha256"] = canonical_hash(config)
        (tmp / CONFIG).write_text(_json(config), encoding="utf-8")
        (tmp / CARD).write_text(render_model_card(config, features, card or {}), encoding="utf-8")
    return path


def _json(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, indent=2, sort_keys=True) + "\n"


def read_config(path: str | Path, *, verify: bool = True) -> dict[str, Any]:
    """Read and check ``config.json`` of an artifact folder (size, format version, checksums)."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"{path} is not an artifact folder (expected a folder with {CONFIG}).")
    if not (path / CONFIG).is_file():
        raise ArtifactError(f"{path} has no {CONFIG}; found {sorted(p.name for p in path.iterdir())[:20]}.")
    config = read_json(path / CONFIG)
    if not isinstance(config, dict):
        raise TamperedArtifactError(f"{path / CONFIG} is not a JSON object; the artifact is damaged.")
    version = config.get("format_version")
    if version is None and "component" not in config:
        hint = (" It looks like a Hugging Face checkpoint: start a transformer encoder from it with "
                "TransformerEncoder.from_pretrained(folder) (CLI: --encoder <folder>), which needs its weights as "
                "model.safetensors." if "model_type" in config else "")
        raise ArtifactError(f"{path / CONFIG} is not a virtualcell artifact's config (no 'format_version' and no "
                            f"'component').{hint} Pass the folder a virtualcell component was saved to.")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ArtifactError(f"{path} uses artifact format {version!r}; this virtualcell reads up to "
                            f"{FORMAT_VERSION}. Upgrade virtualcell (pip install -U virtualcell).")
    if verify:
        expected = config.pop("config_sha256", None)
        if expected != canonical_hash(config):
            raise TamperedArtifactError(f"{path / CONFIG} was edited after the artifact was saved "
                                        "(its content hash does not match). Re-save or re-pull the artifact.")
        config["config_sha256"] = expected
        checksums = config.get("checksums", {})
        allowed = ({WEIGHTS, FEATURES}, {WEIGHTS, FEATURES, HISTORY} if version >= 2 else None)
        if not isinstance(checksums, dict) or set(checksums) not in allowed:
            raise TamperedArtifactError(f"{path / CONFIG} lists checksums for {sorted(map(str, checksums))[:5]}, "
                                        f"not for {[WEIGHTS, FEATURES]} (and {HISTORY}); the artifact is damaged.")
        for filename, digest in checksums.items():
            file = path / filename
            if file.is_symlink() or not file.is_file():
                raise TamperedArtifactError(f"{path} is missing {filename} (or it is not a regular file); "
                                            "the artifact is incomplete.")
            if sha256_file(file) != digest:
                raise TamperedArtifactError(f"{file} was modified after the artifact was saved "
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


def read_component(path: str | Path, resolve: Callable[[Mapping[str, Any], Path], type], *,
                   device: str | torch.device = "cpu"):
    """Load the component saved at ``path``; ``resolve(config, path)`` returns its class (the registry's job)."""
    path = Path(path)
    recover(path)
    config = read_config(path)
    try:
        check_segment(config.get("component"), "component name")
    except UnsafeNameError as error:
        raise TamperedArtifactError(f"{path / CONFIG}: {error}") from None
    cls = resolve(config, path)
    kind = config.get("kind")
    if kind is not None and kind != getattr(cls, "kind", None):
        raise TamperedArtifactError(f"{path} says it holds a {kind!r} but {config['component']!r} is a "
                                    f"{getattr(cls, 'kind', '?')!r}; the artifact is damaged.")
    component = cls.from_config(config.get("init", {}))
    component.load_fitted_state(config.get("state", {}))
    features = (path / FEATURES).read_text(encoding="utf-8").splitlines()
    if config.get("n_features", len(features)) != len(features):
        raise TamperedArtifactError(f"{path / FEATURES} holds {len(features)} names but the artifact was saved "
                                    f"with {config['n_features']}; a name contains a line separator or the file "
                                    "is damaged. Re-save the artifact.")
    component.features = features
    if HISTORY in config.get("checksums", {}):
        history = read_json(path / HISTORY)
        if not isinstance(history, dict):
            raise TamperedArtifactError(f"{path / HISTORY} is not a JSON object; the artifact is damaged.")
        component.training_history = history
    tensors = load_safetensors(path / WEIGHTS)
    bad = nonfinite_tensor(tensors, getattr(component, "nan_marked_tensors", frozenset()))
    if bad is not None:
        raise TamperedArtifactError(f"{path / WEIGHTS}: tensor {bad!r} holds NaN or infinite values, which virtualcell "
                                    "never saves; the artifact was altered or damaged (its checksums were recomputed). "
                                    "Re-pull it from a source you trust, or re-save it from the trained model.")
    _assign_tensors(component, tensors, path)
    component.is_fitted = True
    component.eval()
    from ..execution import resolve_device   # 'auto' -> this machine's device; a missing GPU: a clear error

    return component.to(resolve_device(device))
