"""Resumable training checkpoints without pickle: tensors in safetensors, the rest in JSON.

A checkpoint holds module state dicts, optimizer state (flattened: per-parameter tensors plus
JSON param groups), generator states and the loop's own counters. Written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..io import atomic_write, write_text

__all__ = ["save_checkpoint", "load_checkpoint", "CHECKPOINT_TENSORS", "CHECKPOINT_JSON"]

CHECKPOINT_TENSORS, CHECKPOINT_JSON = "checkpoint.safetensors", "checkpoint.json"


def _flatten_optimizer(prefix: str, optimizer: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for pid, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.state.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    meta[prefix] = {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(prefix: str, optimizer: torch.optim.Optimizer, tensors: Mapping, meta: Mapping) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith(f"{prefix}.state."):
            pid, key = name[len(prefix) + 7:].split(".", 1)
            state.setdefault(int(pid), {})[key] = value
    for pid, values in meta[prefix]["scalars"].items():
        state.setdefault(int(pid), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": meta[prefix]["param_groups"]})


def save_checkpoint(directory: str | Path, *, modules: Mapping[str, torch.nn.Module],
                    optimizers: Mapping[str, torch.optim.Optimizer], generators: Mapping[str, torch.Generator],
                    extra_tensors: Mapping[str, torch.Tensor] | None = None, loop: Mapping[str, Any]) -> None:
    """Write ``directory/checkpoint.{safetensors,json}`` atomically (temporary files, then rename)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {"loop": dict(loop), "optimizers": {}}
    for name, module in modules.items():
        for key, value in module.state_dict().items():
            tensors[f"module.{name}.{key}"] = value.detach().cpu().contiguous().clone()
    for name, optimizer in optimizers.items():
        _flatten_optimizer(f"optim.{name}", optimizer, tensors, meta["optimizers"])
    for name, generator in generators.items():
        tensors[f"generator.{name}"] = generator.get_state()
    for name, value in (extra_tensors or {}).items():
        tensors[f"extra.{name}"] = value.detach().cpu().contiguous().clone()
    atomic_write(directory / CHECKPOINT_TENSORS, lambda tmp: save_file(tensors, str(tmp)))
    write_text(directory / CHECKPOINT_JSON, json.dumps(meta))


def load_checkpoint(directory: str | Path, *, modules: Mapping[str, torch.nn.Module],
                    optimizers: Mapping[str, torch.optim.Optimizer], generators: Mapping[str, torch.Generator]
                    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """Restore state in place; returns (loop counters, extra tensors) or None when there is no checkpoint."""
    from safetensors.torch import load_file

    directory = Path(directory)
    if not (directory / CHECKPOINT_JSON).exists() or not (directory / CHECKPOINT_TENSORS).exists():
        return None
    meta = json.loads((directory / CHECKPOINT_JSON).read_text(encoding="utf-8"))
    tensors = load_file(str(directory / CHECKPOINT_TENSORS))
    for name, module in modules.items():
        prefix = f"module.{name}."
        device = next(iter(module.parameters()), torch.empty(0)).device
        state = {k[len(prefix):]: v.to(device) for k, v in tensors.items() if k.startswith(prefix)}
        module.load_state_dict(state)
    for name, optimizer in optimizers.items():
        _unflatten_optimizer(f"optim.{name}", optimizer, tensors, meta["optimizers"])
    for name, generator in generators.items():
        generator.set_state(tensors[f"generator.{name}"])
    extra = {k[6:]: v for k, v in tensors.items() if k.startswith("extra.")}
    return meta["loop"], extra
