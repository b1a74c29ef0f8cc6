"""Execution policy: device choice, dtype, seeding, autocast and batched inference with progress."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable, Iterator

import numpy as np
import torch

__all__ = [
    "DeviceUnavailableError",
    "resolve_device",
    "seed_everything",
    "make_generator",
    "autocast",
    "seeded",
    "batched_apply",
    "progress_bar",
    "as_tensor",
]

DEVICES = ("auto", "cpu", "cuda", "mps")


class DeviceUnavailableError(RuntimeError):
    """A device was asked for that this machine (or this build of torch) does not have."""


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def _cuda_unavailable_reason() -> str | None:
    """Why torch cannot use CUDA here (None when it can)."""
    if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
        return f"this torch build ({torch.__version__}) has no CUDA support"
    if not torch.cuda.is_available():
        return "torch sees no GPU (no driver, or CUDA_VISIBLE_DEVICES hides them)"
    return None


def resolve_device(device: str | torch.device | None = "cpu") -> torch.device:
    """Turn ``"auto" | "cpu" | "cuda[:i]" | "mps"`` into a ``torch.device``.

    ``"auto"`` picks CUDA, then MPS, then CPU. Asking for a device this machine lacks raises
    :class:`DeviceUnavailableError` (a ``RuntimeError``) that says why and what to pass instead;
    an unknown name raises ``ValueError``.
    """
    if isinstance(device, torch.device):
        name = str(device)
    else:
        name = (device or "cpu").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind, _, index = name.partition(":")
    if kind not in DEVICES or (index and (not index.isdigit() or kind == "auto")):
        raise ValueError(f"Unknown device {device!r}; use one of {DEVICES} (or 'cuda:1' for the second GPU).")
    if kind == "cuda":
        reason = _cuda_unavailable_reason()
        if reason:
            raise DeviceUnavailableError(f"CUDA was requested (device {name!r}) but {reason}; "
                                         "use --device cpu or --device auto (device='cpu' / 'auto' in Python).")
        if index and int(index) >= torch.cuda.device_count():
            raise DeviceUnavailableError(f"GPU {name!r} was requested but torch sees {torch.cuda.device_count()} GPU(s) "
                                         f"(cuda:0 to cuda:{torch.cuda.device_count() - 1}); use --device cuda or auto.")
    if kind == "mps" and not _mps_available():
        raise DeviceUnavailableError("MPS (Apple GPU) was requested but this machine has none; "
                                     "use --device cpu or --device auto (device='cpu' / 'auto' in Python).")
    if kind == "cpu" and index:
        raise ValueError(f"Unknown device {device!r}; the CPU takes no index, use 'cpu'.")
    return torch.device(name)


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


@contextlib.contextmanager
def torch_threads(n: int | None = None) -> Iterator[int]:
    """Run the block with torch's CPU thread count set to ``n`` (None: unchanged), then restore the count
    found on entry (also undoing libraries that change it behind our back, e.g. scanpy's numba Wilcoxon)."""
    saved = torch.get_num_threads()
    if n is not None and n != saved:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != saved:
            torch.set_num_threads(saved)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | str | None = None) -> Iterator[None]:
    """Run the block with torch's global RNG seeded by ``seed`` (the CPU's, and ``device``'s when it is a
    GPU), then put the RNG back as it was: seeded weights and dropout without touching the caller's stream."""
    devices = [device] if device is not None and torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


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
