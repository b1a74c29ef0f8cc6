"""A plain torch minibatch loop over data resident on the device.

The model code writes one ``step(rows) -> {loss name: tensor}`` that does its own backward and
optimizer step on the rows ``rows`` (an index tensor on the device); the loop does the rest:
seeded shuffling, loss averaging without a device sync per batch, a progress bar with the losses,
validation and early stopping (best weights restored), and resumable checkpoints.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from ..execution import progress_bar
from .checkpoint import load_checkpoint, save_checkpoint

__all__ = ["TrainingLoop", "History", "split_validation"]


@dataclasses.dataclass
class History:
    """Per-epoch averages of the step losses and the validation metrics."""

    epochs: list[dict[str, float]] = dataclasses.field(default_factory=list)
    best_epoch: int = -1
    best_score: float = math.inf
    stopped_early: bool = False
    seconds: float = 0.0
    #: the monitored metric, and whether the modules were reset to its best epoch at the end
    monitor: str = ""
    restored_best: bool = False
    #: throughput of the last epoch (cells per second, all processes) and the process's peak memory
    cells_per_s: float = 0.0
    peak_memory_mb: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def record(self) -> dict[str, Any]:
        """The history as saved with a component (``history.json``): per-epoch losses and which
        epoch's weights were kept (``weights_epoch``; ``weights``: ``"best"`` restored or ``"last"``)."""
        last = int(self.epochs[-1]["epoch"]) if self.epochs else -1
        return {"epochs": [dict(e) for e in self.epochs], "n_epochs": len(self.epochs), "monitor": self.monitor,
                "best_epoch": self.best_epoch, "stopped_early": self.stopped_early, "seconds": round(self.seconds, 3),
                "weights": "best" if self.restored_best else "last",
                "weights_epoch": self.best_epoch if self.restored_best else last,
                "cells_per_s": round(self.cells_per_s, 1), "peak_memory_mb": round(self.peak_memory_mb, 1)}


def split_validation(n: int, fraction: float, generator: torch.Generator,
                     dtype: torch.dtype = torch.int64) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (train, validation) row indices (views of one permutation, ``dtype``: int32 halves its bytes and
    draws the same permutation); validation is empty when ``fraction`` is 0 or n is tiny."""
    order = torch.randperm(n, generator=generator, dtype=dtype)
    n_val = int(round(n * fraction)) if n >= 20 else 0
    return order[n_val:], order[:n_val]


class TrainingLoop:
    """Runs epochs of ``step`` over shuffled minibatches of ``n`` rows.

    Args:
        max_epochs: upper bound on epochs.
        batch_size: rows per step (the last short batch is kept unless it would have 1 row).
        patience: stop after this many epochs without improvement of ``monitor`` (None: never).
        monitor: key of the dict ``validate()`` returns (lower is better).
        min_delta: smallest decrease that counts as an improvement.
        seed: seeds the shuffling generator.
        checkpoint_dir: resume from and write checkpoints to this folder (every ``checkpoint_every`` epochs).
        progress: show a progress bar with the running losses.
    """

    def __init__(self, *, max_epochs: int, batch_size: int, patience: int | None = None, monitor: str = "val_loss",
                 min_delta: float = 0.0, seed: int = 0, checkpoint_dir: str | Path | None = None,
                 checkpoint_every: int = 1, progress: bool = True, desc: str = "training",
                 checkpoint_every_steps: int | None = None) -> None:
        self.max_epochs, self.batch_size, self.patience = max_epochs, batch_size, patience
        self.checkpoint_every_steps = checkpoint_every_steps  # also checkpoint mid-epoch (loader mode)
        self.monitor, self.min_delta, self.seed = monitor, min_delta, seed
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.checkpoint_every, self.progress, self.desc = checkpoint_every, progress, desc

    def run(self, n: int, step: Callable[[torch.Tensor], Mapping[str, torch.Tensor]], *,
            device: torch.device | str = "cpu", validate: Callable[[], Mapping[str, float]] | None = None,
            modules: Mapping[str, torch.nn.Module] | None = None,
            optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
            generators: Mapping[str, torch.Generator] | None = None,
            batches: Callable[[int, int], Iterable[Any]] | None = None) -> History:
        """Train; ``modules`` are checkpointed and, with early stopping, reset to their best epoch.

        ``batches(epoch, start)``: iterate a loader instead of shuffled row indices (``step`` then gets
        its batches, e.g. :class:`~virtualcell.train.disk_loader.Batch`), from the epoch's ``start``-th
        cell; each step consumes ``world()`` batches (one per process), so a mid-epoch checkpoint
        (``checkpoint_every_steps``) resumes on any number of processes. Only rank 0 writes checkpoints.
        """
        from .distributed import barrier, is_main, world

        stride, resume_at = world(), None
        modules, optimizers = dict(modules or {}), dict(optimizers or {})
        shuffle = torch.Generator().manual_seed(self.seed)
        generators = {"shuffle": shuffle, **dict(generators or {})}
        history, start, best_state, waited = History(monitor=self.monitor if validate is not None else ""), 0, None, 0
        data = batches.identity() if hasattr(batches, "identity") else None   # the on-disk stores read (DiskRows)
        if self.checkpoint_dir is not None:
            restored = load_checkpoint(self.checkpoint_dir, modules=modules, optimizers=optimizers, generators=generators)
            if restored is not None:
                loop, extra = restored
                if data is not None:
                    batches.check_identity(loop.get("data"))    # a file changed since the checkpoint: refused
                history = History(**loop["history"])
                start, waited = loop["epoch"] + 1, loop["waited"]
                resume_at = loop.get("in_epoch")
                if extra:
                    best_state = _unprefix_best(extra)
        began = time.perf_counter() - history.seconds
        bar = progress_bar(range(start, self.max_epochs), total=self.max_epochs, initial=start, desc=self.desc,
                           enabled=self.progress and is_main())
        for epoch in bar:
            for module in modules.values():
                module.train()
            sums: dict[str, torch.Tensor] = {}
            n_batches, done, cells, tick = 0, 0, 0, time.perf_counter()
            if batches is None:
                order = torch.randperm(n, generator=shuffle).to(device)
                feed = (order[b:b + self.batch_size] for b in range(0, n, self.batch_size))
            else:
                if resume_at is not None and resume_at["epoch"] == epoch:
                    done, n_batches = resume_at["cells"], resume_at["n_batches"]
                    sums = {k: torch.tensor(v) for k, v in resume_at["sums"].items()}
                feed = iter(batches(epoch, done))
            for rows in feed:
                if batches is None and rows.numel() < 2 and n > 1:
                    continue
                for key, value in step(rows).items():
                    value = value.detach().float()
                    sums[key] = sums[key] + value.to(sums[key].device) if key in sums else value
                n_batches, done, cells = n_batches + 1, done + len(rows) * stride, cells + len(rows) * stride
                if (batches is not None and self.checkpoint_dir is not None and self.checkpoint_every_steps
                        and n_batches % self.checkpoint_every_steps == 0):
                    history.seconds = time.perf_counter() - began
                    if is_main():
                        save_checkpoint(self.checkpoint_dir, modules=modules, optimizers=optimizers,
                                        generators=generators, extra_tensors=_prefix_best(best_state),
                                        loop={"epoch": epoch - 1, "waited": waited, "history": history.to_dict(),
                                              "data": data,
                                              "in_epoch": {"epoch": epoch, "cells": done, "n_batches": n_batches,
                                                           "sums": {k: float(v) for k, v in sums.items()}}})
                    barrier()
            history.cells_per_s = cells / max(time.perf_counter() - tick, 1e-9)
            history.peak_memory_mb = _peak_memory_mb(device)
            record = {key: float(value) / max(n_batches, 1) for key, value in sums.items()}
            if validate is not None:
                for module in modules.values():
                    module.eval()
                with torch.no_grad():
                    record.update({k: float(v) for k, v in validate().items()})
            record["epoch"] = epoch
            history.epochs.append(record)
            bar.set_postfix({**{k: f"{v:.4g}" for k, v in record.items() if k != "epoch"},
                             "cells/s": f"{history.cells_per_s:.0f}", "peak_MB": f"{history.peak_memory_mb:.0f}"},
                            refresh=False)
            score = record.get(self.monitor)
            if score is not None and math.isfinite(score):
                if score < history.best_score - self.min_delta:
                    history.best_score, history.best_epoch, waited = score, epoch, 0
                    if self.patience is not None:
                        best_state = {name: copy.deepcopy(m.state_dict()) for name, m in modules.items()}
                else:
                    waited += 1
            stop = self.patience is not None and waited >= self.patience
            history.seconds = time.perf_counter() - began
            if self.checkpoint_dir is not None and ((epoch + 1) % self.checkpoint_every == 0 or stop) and is_main():
                save_checkpoint(self.checkpoint_dir, modules=modules, optimizers=optimizers, generators=generators,
                                extra_tensors=_prefix_best(best_state),
                                loop={"epoch": epoch, "waited": waited, "history": history.to_dict(), "data": data})
            if stop:
                history.stopped_early = True
                break
        bar.close()
        if best_state is not None:
            for name, module in modules.items():
                module.load_state_dict(best_state[name])
            history.restored_best = True
        for module in modules.values():
            module.eval()
        history.seconds = time.perf_counter() - began
        return history


def _peak_memory_mb(device: torch.device | str) -> float:
    """Peak memory of this process so far: CUDA allocations on a GPU, else the peak resident set (MB)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _prefix_best(best: Mapping[str, Mapping[str, torch.Tensor]] | None) -> dict[str, torch.Tensor]:
    if not best:
        return {}
    return {f"best.{name}.{key}": value for name, state in best.items() for key, value in state.items()}


def _unprefix_best(extra: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    best: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in extra.items():
        if key.startswith("best."):
            name, param = key[5:].split(".", 1)
            best.setdefault(name, {})[param] = value
    return best
