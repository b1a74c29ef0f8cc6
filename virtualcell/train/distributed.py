"""Data-parallel training on ``torch.distributed`` (DistributedDataParallel), launched by ``torchrun``.

``init_from_env()`` joins the process group that ``torchrun`` (or ``torch.multiprocessing``) set up
in the environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``, ``LOCAL_RANK``):
gloo on CPU, NCCL on CUDA. Every process reads its own shard of the global batches
(:meth:`virtualcell.train.disk_loader.DiskLoader.iterate` with ``rank``/``world``), gradients are
averaged by DDP, and only rank 0 writes checkpoints and artifacts (``is_main()``). Outside a process
group every helper degrades to the single-process answer, so the same code runs with one process.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DistributedContext", "init_from_env", "world", "rank", "is_main", "barrier", "wrap",
           "all_reduce_mean", "shutdown"]


@dataclasses.dataclass(frozen=True)
class DistributedContext:
    """This process's ``rank`` of ``world`` and its ``device`` (cuda:LOCAL_RANK or cpu)."""

    rank: int
    world: int
    device: torch.device
    backend: str


def init_from_env(device: str = "auto", timeout_s: float = 300.0) -> DistributedContext:
    """Join the process group described by the environment (torchrun's variables); idempotent.

    ``device``: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``; the backend follows
    (NCCL on CUDA, gloo on CPU). Without ``WORLD_SIZE`` in the environment this is one process.
    """
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    backend = "nccl" if use_cuda else "gloo"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise RuntimeError(f"WORLD_SIZE is set but {missing} are not: launch with torchrun "
                               "(torchrun --nproc-per-node N script.py) or set them for every process.")
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return DistributedContext(rank(), world(), dev, dist.get_backend() if dist.is_initialized() else backend)


def world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one process that saves."""
    return rank() == 0


def barrier() -> None:
    if world() > 1:
        dist.barrier()


class _Method(torch.nn.Module):
    """Calls ``module.<method>`` as its forward, so DDP can wrap a model whose training entry is not forward."""

    def __init__(self, module: torch.nn.Module, method: str) -> None:
        super().__init__()
        self.module, self.method = module, method

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.module, self.method)(*args, **kwargs)


def wrap(module: torch.nn.Module, device: torch.device | None = None, method: str = "forward") -> Callable[..., Any]:
    """``module.<method>`` as a callable, run through DistributedDataParallel (gradients averaged over the
    processes in backward) when a process group of more than one is running; the bound method itself otherwise."""
    if world() == 1:
        return getattr(module, method)
    ids = [device.index] if device is not None and device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(_Method(module, method), device_ids=ids)


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """The mean of ``value`` over the processes (a copy; ``value`` itself in a single process)."""
    if world() == 1:
        return value
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / world()


def shutdown() -> None:
    """Leave the process group (call at the end of every process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
