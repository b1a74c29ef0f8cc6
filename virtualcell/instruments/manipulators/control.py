"""The ``control`` baseline: predict no change (``z' = z``)."""

from __future__ import annotations

from typing import Any

import torch

from ...component import Condition, Manipulator
from ...nn.group_means import repeat_samples

__all__ = ["ControlManipulator"]


class ControlManipulator(Manipulator):
    """Predicts that the target condition looks exactly like the source: the floor every method must beat."""

    def __init__(self) -> None:
        super().__init__()

    def _fit(self, z: torch.Tensor, labels: Condition, **kwargs: Any) -> None:
        pass

    def _manipulate(self, z, condition, *, n_samples, generator):
        return repeat_samples(z, n_samples)
