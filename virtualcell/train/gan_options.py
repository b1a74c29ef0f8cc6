"""Hyper-parameters of conditional GAN training."""

from __future__ import annotations

import dataclasses

__all__ = ["GANOptions"]


@dataclasses.dataclass(frozen=True)
class GANOptions:
    """Hyper-parameters of :func:`train_cgan` (see CGANManipulator for their meaning)."""

    max_epochs: int = 30
    batch_size: int = 64
    lr_generator: float = 2e-4
    lr_discriminator: float = 4e-4
    lr_tables: float = 2e-3
    betas: tuple[float, float] = (0.5, 0.9)
    n_critic: int = 1
    gp_weight: float = 10.0
    cycle_weight: float = 10.0
    identity_weight: float = 10.0
    classifier_weight: float = 1.0
    correction_weight: float = 0.0
    drift_weight: float = 1e-3
    min_group_cells: int = 5
    min_group_share: float = 0.0
    epoch_cells: int | None = None
    val_fraction: float = 0.1
    patience: int | None = 10
    mixed_precision: bool = False
