"""A third-party manipulator: the mean shift between conditions, scaled by ``alpha``."""

import torch

from virtualcell import Manipulator


class ScaledShiftManipulator(Manipulator):
    test_config = {"alpha": 0.5}

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("means", torch.zeros(0, 0))

    def _fit(self, z, labels, **kwargs):
        self.means = torch.stack([z[labels.target == c].mean(0) for c in range(self.n_conditions)])

    def _manipulate(self, z, condition, *, n_samples, generator):
        shift = self.means[condition.target] - self.means[condition.source]
        return (z + self.config["alpha"] * shift).unsqueeze(0).repeat(n_samples, 1, 1)
