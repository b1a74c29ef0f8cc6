"""Execution policy: device choice, dtype, seeding, autocast and batched inference with progress."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable, Iterator

import numpy as np
import torch

__all__ = [
    "resolve_device",
    "seed_everything",
    "make_generator",
    "autocast",
    "batched_apply",
    "progress_bar",
    "as_tensor",
]

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str | torch.device | None = "cpu") -> torch.device:
    """Turn ``"auto" | "cpu" | "cuda[:i]" | "mps"`` into a ``torch.device``; ask for a missing one: error."""
    if isinstance(device, torch.device):
        name = device.type
    else:
        name = (device or "cpu").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":")[0]
    if kind not in DEVICES:
        raise ValueError(f"Unknown device {device!r}; use one of {DEVICES} (or 'cuda:1').")
    if kind == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was asked for but torch sees no CUDA GPU; use device='auto' or 'cpu'.")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError("device='mps' was asked for but this machine has no Apple GPU; use 'auto' or 'cpu'.")
    return torch.device(device if isinstance(device, torch.device) else name)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_generator(seed: int | torch.Generator | None, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (a generator passes through; None: seed 0)."""
    if isinstance(seed, torch.Generator):
        return seed
    generator = torch.Generator(device=torch.device(device))
    generator.manual_seed(0 if seed is None else int(seed))
    return generator


def autocast(device: torch.device, enabled: bool, dtype: torch.dtype | None = None):
    """Mixed precision context: bf16 on CPU, fp16/bf16 on CUDA; a no-op when disabled."""
    if not enabled:
        return contextlib.nullcontext()
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cpu" or torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def progress_bar(iterable=None, *, total: int | None = None, desc: str = "", enabled: bool = True, **kwargs):
    """A tqdm bar, quiet when ``enabled`` is False or VIRTUALCELL_PROGRESS=0."""
    from tqdm.auto import tqdm

    disable = (not enabled) or os.environ.get("VIRTUALCELL_PROGRESS", "1") == "0"
    return tqdm(iterable, total=total, desc=desc, disable=disable, leave=False, dynamic_ncols=True, **kwargs)


def as_tensor(x, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """numpy / scipy sparse / tensor -> dense tensor on ``device``."""
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype)
    if hasattr(x, "toarray"):
        x = x.toarray()
    return torch.as_tensor(np.asarray(x), dtype=dtype).to(device)


def _chunks(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


@torch.no_grad()
def batched_apply(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    batch_size: int = 4096,
    device: torch.device | str | None = None,
    progress: bool = False,
    desc: str = "",
) -> torch.Tensor:
    """Apply ``fn`` to ``x`` [n, ...] in row batches on ``device``; results concatenated on x's device."""
    n = x.shape[0]
    if n <= batch_size and device is None:
        return fn(x)
    outputs = []
    target = torch.device(device) if device is not None else x.device
    for rows in progress_bar(list(_chunks(n, batch_size)), desc=desc, enabled=progress):
        outputs.append(fn(x[rows].to(target)).to(x.device))
    return torch.cat(outputs, dim=0)
