"""The PERT `mean-perturbation` baseline: the average training response, whatever the target."""

from __future__ import annotations

import pytest
import torch

from virtualcell.component import Condition
from virtualcell.instruments.manipulators.mean_perturbation import MeanPerturbationManipulator


def _fitted(context: bool):
    # 1-D z. context 0: control 0, target 1 at 2, target 2 at 4 -> responses 2 and 4 -> shift 3
    #        context 1: control 10, target 1 at 11 (two cells)    -> response 1     -> shift 1
    z = torch.tensor([[0.0], [2.0], [4.0], [10.0], [11.0], [11.0]])
    target = torch.tensor([0, 1, 2, 0, 1, 1])
    ctx = torch.tensor([0, 0, 0, 1, 1, 1]) if context else None
    return MeanPerturbationManipulator().fit(z, Condition(target, context=ctx), n_conditions=4, progress=False)


def test_per_context_and_pooled_shift_by_hand():
    m = _fitted(context=True)
    assert m.shift(0).item() == pytest.approx(3.0) and m.shift(1).item() == pytest.approx(1.0)
    # pooled: target 1 = mean(2, 11, 11) − mean(0, 10) = 8 − 5 = 3; target 2 = 4 − 0 = 4 -> 3.5
    assert m.shift().item() == pytest.approx(3.5) and m.shift(7).item() == pytest.approx(3.5)
    # no contexts: one control mean 5 for both targets -> (8 − 5 + 4 − 5) / 2 = 1
    assert _fitted(context=False).shift().item() == pytest.approx(1.0)


def test_same_shift_for_every_target_including_one_unseen_at_fit():
    m = _fitted(context=True)
    z = torch.zeros(4, 1)
    for target in (1, 2, 3):                      # 3 has no cells at fit
        moved = m.manipulate(z, Condition(torch.full((4,), target), torch.zeros(4, dtype=torch.long),
                                          torch.tensor([0, 0, 1, 1])))
        assert moved.squeeze(1).tolist() == pytest.approx([3.0, 3.0, 1.0, 1.0])
    back = m.manipulate(torch.full((2, 1), 5.0), Condition(torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.long)))
    assert back.squeeze(1).tolist() == pytest.approx([1.5, 1.5])      # perturbed -> control: pooled shift removed


def test_needs_control_and_a_perturbation():
    with pytest.raises(ValueError, match="control"):
        MeanPerturbationManipulator().fit(torch.zeros(3, 2), Condition(torch.tensor([1, 1, 2])), progress=False)
