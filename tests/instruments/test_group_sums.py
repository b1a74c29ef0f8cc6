"""Manipulators fitted on per-group sums of the codes: the streamed fit (``group_plan`` + ``fit_sums`` on sums added
up chunk by chunk) is the in-memory ``fit`` of the same seed, and ``group_means`` / balanced means give today's numbers."""

from __future__ import annotations

import pytest
import torch

import virtualcell as vc
from virtualcell.component import Condition
from virtualcell.instruments.manipulators.latent_arithmetic import balanced_means
from virtualcell.nn.group_means import GroupPlan, group_means, group_sums

STREAMED = [("control", {}), ("mean-shift", {}), ("mean-perturbation", {}), ("latent-arithmetic", {"balance": False}),
            ("latent-arithmetic", {"balance": True})]


def _cells(n: int = 700, contexts: bool = True, seed: int = 0) -> tuple[torch.Tensor, Condition]:
    """Codes [n, 5] of 4 conditions (condition 3 without cells) x 3 contexts of unequal sizes."""
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 5, generator=generator) * 2 + 1
    condition = torch.randint(0, 3, (n,), generator=generator)
    context = torch.multinomial(torch.tensor([0.7, 0.2, 0.1]), n, replacement=True, generator=generator)
    z += condition[:, None] + 3 * context[:, None]
    return z, Condition(condition, context=context if contexts else None)


def _old_balanced_means(z, condition, context, n_conditions, generator):
    """The implementation before group sums (scGen's resampled rows, gathered and averaged): the reference."""
    means = torch.full((n_conditions, z.shape[1]), float("nan"))
    context = torch.zeros_like(condition) if context is None else context
    for c in range(n_conditions):
        rows = torch.nonzero(condition == c).flatten()
        if rows.numel() == 0:
            continue
        groups = [rows[context[rows] == k] for k in torch.unique(context[rows]).tolist()]
        size = max(g.numel() for g in groups)
        picks = [g[torch.randint(g.numel(), (size,), generator=generator)] for g in groups]
        means[c] = z[torch.cat(picks)].double().mean(0).float()
    return means


def _streamed(spec, z: torch.Tensor, labels: Condition, *, seed: int, chunk: int = 97):
    """Fit ``spec`` as a fit from disk does: the plan's sums of chunks of codes, added up, then ``fit_sums``."""
    manipulator = vc.create(spec[0], **spec[1])
    n_contexts = 0 if labels.context is None else 3
    plan = manipulator.group_plan(labels, n_conditions=4, n_contexts=n_contexts, seed=seed)
    sums, totals = plan.sums(z[:0], slice(0, 0))
    for begin in range(0, len(z), chunk):
        part, part_totals = plan.sums(z[begin:begin + chunk], slice(begin, begin + chunk))
        sums, totals = sums + part, totals + part_totals
    return manipulator.fit_sums(sums, totals, labels, n_conditions=4, n_contexts=n_contexts)


def _in_memory(spec, z, labels, *, seed):
    return vc.create(spec[0], **spec[1]).fit(z, labels, n_conditions=4, n_contexts=0 if labels.context is None else 3, seed=seed)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a.nan_to_num(123.0), b.nan_to_num(123.0))


@pytest.mark.parametrize("contexts", [True, False])
@pytest.mark.parametrize("spec", STREAMED, ids=lambda s: "-".join([s[0], *map(str, s[1].values())]))
def test_streamed_fit_is_the_in_memory_fit(spec, contexts):
    z, labels = _cells(contexts=contexts)
    memory = _in_memory(spec, z, labels, seed=3)
    streamed = _streamed(spec, z, _int32(labels), seed=3)
    assert streamed.is_fitted and streamed.n_features == 5 and streamed.features == memory.features
    assert (streamed.n_conditions, streamed.n_contexts) == (memory.n_conditions, memory.n_contexts)
    state, expected = streamed.state_dict(), memory.state_dict()
    assert state.keys() == expected.keys()
    assert all(_same(state[k], expected[k]) for k in state), [k for k in state if not _same(state[k], expected[k])]
    moved = Condition.constant(20, 1, source=0, context=labels.context[:20] if contexts else None)
    torch.testing.assert_close(streamed.manipulate(z[:20], moved), memory.manipulate(z[:20], moved), rtol=0, atol=0)


def _int32(labels: Condition) -> Condition:
    """The labels a fit from disk streams with: int32 ids."""
    return Condition(labels.target.int(), context=None if labels.context is None else labels.context.int())


@pytest.mark.parametrize("contexts", [True, False])
def test_balanced_means_are_the_resampled_rows_means(contexts):
    for seed in range(5):
        z, labels = _cells(n=300 + 50 * seed, contexts=contexts, seed=seed)
        new = balanced_means(z, labels.target, labels.context, 4, torch.Generator().manual_seed(seed))
        old = _old_balanced_means(z, labels.target, labels.context, 4, torch.Generator().manual_seed(seed))
        assert _same(new, old)
        fitted = vc.create("latent-arithmetic").fit(z, labels, n_conditions=4, seed=seed)
        assert _same(fitted.condition_means, old)


def test_group_sums_add_up_over_chunks_and_make_group_means():
    z, labels = _cells()
    group = labels.context * 4 + labels.target
    sums, totals = group_sums(z, group.int(), 12)
    halves = [group_sums(z[part], group[part], 12) for part in (slice(0, 350), slice(350, None))]
    torch.testing.assert_close(sums, halves[0][0] + halves[1][0])
    assert torch.equal(totals, torch.bincount(group, minlength=12).double())
    means, counts = group_means(z, labels.target, labels.context, 4, 3)
    for k, c in ((0, 0), (2, 1)):
        rows = (labels.context == k) & (labels.target == c)
        assert torch.equal(means[k, c], z[rows].double().mean(0).float()) and counts[k, c] == rows.sum()
    assert torch.equal(means[:, 3], torch.zeros(3, 5)) and torch.equal(counts[:, 3], torch.zeros(3, dtype=torch.float64))
    weighted, weights = GroupPlan(labels.target, 4, torch.full((len(z),), 2, dtype=torch.int32)).sums(z)
    torch.testing.assert_close(weighted, 2 * group_sums(z, labels.target, 4)[0])
    assert torch.equal(weights, 2 * torch.bincount(labels.target, minlength=4).double())


def test_manipulators_needing_every_code_have_no_plan():
    z, labels = _cells()
    cgan = vc.create("cgan")
    assert cgan.group_plan(labels, n_conditions=4, n_contexts=3) is None
    assert vc.create("latent-arithmetic").group_plan(labels, n_conditions=4, n_contexts=3).n_groups == 4
    assert vc.create("control").group_plan(labels, n_conditions=4, n_contexts=3).n_groups == 0
