"""The transformer's pretraining loop: masked-expression minibatches through ``train.TrainingLoop``.

The cells come from a tensor in memory or from on-disk rows (``train.disk_loader.DiskRows``): in the
in-memory order (``loader_options`` None: the in-memory fit's numbers), or in shuffled blocks from
``DiskLoader``, each process its own shard under ``torchrun`` with gradients averaged by
DistributedDataParallel (``train.distributed.wrap`` around ``GeneTokenModel.pretraining_losses``).
AdamW with a linear warm-up (5% of the steps) then a linear decay; the schedule's position is the
optimizer's own step count, so a run resumed from a checkpoint (``checkpoint_dir``, and mid-epoch every
``rows.checkpoint_every_steps`` steps) continues it.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ...execution import autocast, make_generator, seeded
from .tokenize import check_values

__all__ = ["pretrain", "use_amp", "warmup_decay"]


def use_amp(device: torch.device, setting: bool | None) -> bool:
    """bf16 autocast: on CUDA by default (where bf16 is supported: fp16 would need a GradScaler), off on CPU."""
    bf16 = device.type != "cuda" or torch.cuda.is_bf16_supported()
    return bf16 and (device.type == "cuda" if setting is None else bool(setting))


def warmup_decay(step: int, total: int) -> float:
    """Learning-rate factor of step ``step`` (0-based) of ``total``: linear warm-up over 5%, then linear decay."""
    warmup = max(1, total // 20)
    return min((step + 1) / warmup, max(0.0, (total - step) / max(total - warmup, 1)))


def _steps_taken(optimizer: torch.optim.Optimizer) -> int:
    """Optimizer steps so far (AdamW's per-parameter ``step``; restored with a checkpoint)."""
    state = next((s for s in optimizer.state.values() if "step" in s), None)
    return int(state["step"]) if state is not None else 0


def pretrain(encoder: Any, x: Any, *, batch_size: int, device: torch.device, seed: int, progress: bool) -> Any:
    """Train ``encoder.model`` on ``x`` [n, genes] (tensor or ``DiskRows``); returns the loop's ``History``."""
    from ...train import TrainingLoop
    from ...train.disk_loader import loader_batches
    from ...train.distributed import rank, wrap, world

    c, model = encoder.config, encoder.model
    for parameter in model.unused_in_pretraining():     # never trained; frozen so DDP does not wait for them
        parameter.requires_grad_(False)
    n, on_disk = int(x.shape[0]), not isinstance(x, torch.Tensor)
    batches = loader_batches(x, torch.arange(n), batch_size, seed)    # None: rows indexed as in memory
    steps = max(1, math.ceil(n / (batch_size * world()))) * c["max_epochs"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=c["lr"], weight_decay=c["weight_decay"])
    amp = use_amp(device, c["mixed_precision"])
    masks = make_generator(seed + rank(), "cpu")
    losses_of = wrap(model, device, "pretraining_losses")   # DistributedDataParallel under torchrun
    mask_id = int(encoder.special["mask"])

    def step(rows: Any) -> dict[str, torch.Tensor]:
        cells = x[rows] if batches is None else rows.x
        if on_disk:
            check_values(cells)
        batch = encoder.tokenize(cells)
        for group in optimizer.param_groups:
            group["lr"] = c["lr"] * warmup_decay(_steps_taken(optimizer), steps)
        with autocast(device, amp):
            losses = losses_of(batch, c["mask_fraction"], masks, mask_id)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return {k: v.detach() for k, v in losses.items()}

    loop = TrainingLoop(max_epochs=c["max_epochs"], batch_size=batch_size, seed=seed, progress=progress,
                        desc="transformer", checkpoint_dir=c["checkpoint_dir"],
                        checkpoint_every_steps=getattr(x, "checkpoint_every_steps", None))
    with seeded(seed + rank(), device):                   # dropout draws: same seed, same weights
        return loop.run(n, step, device=device, modules={"model": model}, optimizers={"adamw": optimizer},
                        generators={"masks": masks}, batches=batches)
