"""LatentArithmeticManipulator: balanced (scGen) means resample, ``balance=False`` means plain means."""

import pytest
import torch

from virtualcell.component import Condition
from virtualcell.instruments.manipulators.latent_arithmetic import LatentArithmeticManipulator


def _data():
    """Two conditions x two contexts of very unequal sizes (90 vs 10 cells), 3 latent dimensions."""
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(200, 3, generator=generator)
    condition = torch.tensor([0] * 100 + [1] * 100)
    context = torch.tensor(([0] * 90 + [1] * 10) * 2)
    z[context == 1] += 5.0
    z[condition == 1] += 1.0
    return z, Condition(target=condition, context=context)


def test_balance_false_uses_plain_means_whatever_the_seed():
    z, labels = _data()
    means = [LatentArithmeticManipulator(balance=False).fit(z, labels, seed=seed).condition_means for seed in (0, 1)]
    expected = torch.stack([z[labels.target == c].double().mean(0) for c in (0, 1)]).float()
    torch.testing.assert_close(means[0], expected)
    torch.testing.assert_close(means[1], expected)     # no resampling: the seed changes nothing


def test_balance_true_resamples_contexts_to_equal_size():
    z, labels = _data()
    a = LatentArithmeticManipulator(balance=True).fit(z, labels, seed=0).condition_means
    b = LatentArithmeticManipulator(balance=True).fit(z, labels, seed=1).condition_means
    assert not torch.allclose(a, b), "balanced means come from a seeded resample"
    # the rare context (mean +5) weighs ~half in balanced means, a tenth in plain ones
    assert float(a[0].mean()) > 2.0
    plain = LatentArithmeticManipulator(balance=False).fit(z, labels).condition_means
    assert float(plain[0].mean()) < 1.0


def test_balance_false_delta_and_missing_condition():
    z, labels = _data()
    manipulator = LatentArithmeticManipulator(balance=False).fit(z, labels, n_conditions=3)
    delta = manipulator.delta(0, 1)
    torch.testing.assert_close(delta, (z[100:].double().mean(0) - z[:100].double().mean(0)).float())
    with pytest.raises(ValueError, match="had no cells"):
        manipulator.delta(0, 2)
