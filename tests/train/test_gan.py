"""WGAN-GP training of the conditional generator: the penalty, the discriminator, the loop."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from virtualcell.instruments.manipulators.cgan import CGANGenerator
from virtualcell.train.gan import CGANDiscriminator, GANOptions, gradient_penalty, train_cgan

ARCH = dict(n_groups=4, token_dim=8, n_heads=2, hidden=16, n_layers=1)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test of this module runs on one torch thread (tests/conftest.py)."""


class LinearCritic(nn.Module):
    """D(x, c) = x . w_c: its input gradient is w_c everywhere."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.weights = nn.Parameter(weights)

    def forward(self, x, condition):
        return (x * self.weights[condition]).sum(-1), None


class SquareCritic(nn.Module):
    """D(x, c) = ||x||^2 / 2: its input gradient is x itself, a different norm for every cell."""

    def forward(self, x, condition):
        return 0.5 * x.square().sum(-1), None


def test_penalty_of_a_linear_critic_is_exact():
    weights = torch.stack([torch.tensor([3.0, 4.0]), torch.tensor([0.6, 0.8])])   # norms 5 and 1
    critic = LinearCritic(weights)
    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    only_first = gradient_penalty(critic, real, fake, torch.zeros(6, dtype=torch.long))
    torch.testing.assert_close(only_first, torch.tensor(16.0))                      # (5 - 1)^2
    assert float(gradient_penalty(critic, real, fake, torch.ones(6, dtype=torch.long))) == pytest.approx(0.0, abs=1e-10)
    mixed = gradient_penalty(critic, real, fake, torch.tensor([0, 1, 0, 1, 1, 1]))
    torch.testing.assert_close(mixed, torch.tensor(16.0 * 2 / 6))                   # a mean over cells


def test_penalty_norm_is_per_cell_at_the_interpolates():
    real, fake = torch.randn(5, 3), torch.randn(5, 3)
    condition = torch.zeros(5, dtype=torch.long)
    penalty = gradient_penalty(SquareCritic(), real, fake, condition, torch.Generator().manual_seed(4))
    eps = torch.rand(5, 1, generator=torch.Generator().manual_seed(4))
    x_hat = eps * real + (1 - eps) * fake                                           # one eps per cell
    torch.testing.assert_close(penalty, ((x_hat.norm(dim=1) - 1) ** 2).mean())
    wrong = (x_hat.norm() - 1) ** 2                                                  # a batch-wide norm
    assert not torch.isclose(penalty, wrong)


def test_penalty_trains_the_critic():
    weights = torch.tensor([[3.0, 4.0]])
    critic = LinearCritic(weights.clone())
    gradient_penalty(critic, torch.randn(4, 2), torch.randn(4, 2), torch.zeros(4, dtype=torch.long)).backward()
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    torch.testing.assert_close(critic.weights.grad[0], 2 * 4 * weights[0] / 5)


def test_penalty_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        gradient_penalty(SquareCritic(), torch.randn(3, 2), torch.randn(4, 2), torch.zeros(3, dtype=torch.long))


def test_discriminator_scores_and_classifies_through_the_shared_trunk():
    discriminator = CGANDiscriminator(20, 3, **ARCH)
    x = torch.randn(7, 20)
    score, logits = discriminator(x, torch.tensor([0, 1, 2, 0, 1, 2, 0]))
    assert score.shape == (7,) and logits.shape == (7, 3)
    assert discriminator.trunk.input_film is None                     # the critic is not told the condition
    again, _ = discriminator(x, torch.ones(7, dtype=torch.long))
    assert not torch.allclose(score, again)                           # ... but its projection score depends on it
    penalty = gradient_penalty(discriminator, x, torch.randn(7, 20), torch.zeros(7, dtype=torch.long))
    penalty.backward()
    assert discriminator.trunk.groups.weight.grad.abs().sum() > 0


def test_group_sampler_matches_groups_and_flags_unpaired_ones():
    from virtualcell.train.gan_batches import GroupSampler

    condition = torch.tensor([0, 0, 1, 1, 0, 0, 0, 1])
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])            # group 1 has no cells of condition 1
    sampler = GroupSampler(torch.arange(8), condition, groups, 2, min_cells=1)
    g = torch.Generator().manual_seed(0)
    rows, matched = sampler.sample(torch.tensor([0, 1, 2] * 20), torch.ones(60, dtype=torch.long), g)
    assert matched.tolist() == [True, False, True] * 20
    assert set(rows[0::3].tolist()) == {2, 3} and set(rows[2::3].tolist()) == {7}
    assert set(rows[1::3].tolist()) <= {2, 3, 7}                 # unpaired: any cell of the condition
    targets = sampler.other_targets(condition, g)
    assert (targets != condition).all()


def test_group_sampler_leaves_out_groups_with_a_few_stray_cells_of_the_target():
    from virtualcell.train.gan_batches import GroupSampler

    # group 0: 10 controls, 10 stimulated; group 1: 18 controls of a held-out type + 2 stray stimulated
    condition = torch.tensor([0] * 10 + [1] * 10 + [0] * 18 + [1] * 2)
    groups = torch.tensor([0] * 20 + [1] * 20)
    g = torch.Generator().manual_seed(0)
    query = (torch.tensor([0, 1] * 10), torch.ones(20, dtype=torch.long))
    loose = GroupSampler(torch.arange(40), condition, groups, 2, min_cells=1)
    assert loose.sample(*query, g)[1].all()                        # without the share rule the strays match
    strict = GroupSampler(torch.arange(40), condition, groups, 2, min_cells=1, min_share=0.5)
    rows, matched = strict.sample(*query, g)
    assert matched.tolist() == [True, False] * 10                  # 2/20 = 0.1 < 0.5 x 12/40
    assert set(rows.tolist()) <= set(range(10, 20)) | {38, 39}


def _two_conditions(n: int = 80, d: int = 12, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    condition = torch.arange(n) % 2
    x = (torch.rand(n, d, generator=g) + condition[:, None] * torch.linspace(0, 2, d)).float()
    return x, condition


def test_train_cgan_moves_cells_toward_the_other_condition():
    x, condition = _two_conditions()
    generator = CGANGenerator(x.shape[1], 2, cond_dim=8, **ARCH)
    options = GANOptions(max_epochs=15, batch_size=32, n_critic=1, lr_generator=2e-3, lr_discriminator=2e-3,
                         lr_tables=3e-2, patience=None)
    history, discriminator = train_cgan(generator, x, condition, n_conditions=2, options=options, progress=False,
                                        discriminator_kwargs=ARCH)
    assert isinstance(discriminator, CGANDiscriminator)
    assert {"wasserstein", "gp", "cycle", "identity", "g_adv", "g_cls", "d_cls", "val_loss"} <= set(history.epochs[-1])
    with torch.no_grad():
        n = int((condition == 0).sum())
        moved = generator(x[condition == 0], torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long))
    target_mean = x[condition == 1].mean(0)
    before = (x[condition == 0].mean(0) - target_mean).abs().mean()
    after = (moved.mean(0) - target_mean).abs().mean()
    assert after < 0.5 * before, (before, after)


def test_train_cgan_stops_early_and_restores_the_best_epoch():
    x, condition = _two_conditions()
    generator = CGANGenerator(x.shape[1], 2, cond_dim=8, **ARCH)
    options = GANOptions(max_epochs=30, batch_size=32, n_critic=1, patience=1, lr_generator=1e-2)
    history, _ = train_cgan(generator, x, condition, n_conditions=2, options=options, progress=False,
                            discriminator_kwargs=ARCH)
    assert history.best_epoch >= 0
    if history.stopped_early:
        assert len(history.epochs) < 30


def test_train_cgan_is_seeded():
    x, condition = _two_conditions()
    outputs = []
    for _ in range(2):
        torch.manual_seed(123)                                       # training must not depend on the global RNG
        generator = CGANGenerator(x.shape[1], 2, cond_dim=8, **ARCH)
        train_cgan(generator, x, condition, n_conditions=2, seed=5, progress=False, discriminator_kwargs=ARCH,
                   options=GANOptions(max_epochs=2, batch_size=32, n_critic=2))
        torch.manual_seed(999)
        outputs.append(generator(x, condition, 1 - condition).detach())
    torch.testing.assert_close(outputs[0], outputs[1], atol=0, rtol=0)


def test_train_cgan_needs_two_conditions():
    x, _ = _two_conditions()
    generator = CGANGenerator(x.shape[1], 2, cond_dim=8, **ARCH)
    with pytest.raises(ValueError, match="two conditions"):
        train_cgan(generator, x, torch.zeros(len(x), dtype=torch.long), n_conditions=2, progress=False)


def test_mixed_precision_on_cpu_runs():
    x, condition = _two_conditions()
    generator = CGANGenerator(x.shape[1], 2, cond_dim=8, **ARCH)
    history, _ = train_cgan(generator, x, condition, n_conditions=2, progress=False, discriminator_kwargs=ARCH,
                            options=GANOptions(max_epochs=1, batch_size=32, n_critic=1, mixed_precision=True))
    assert all(torch.isfinite(torch.tensor(v)) for v in history.epochs[-1].values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_mixed_precision_training():
    x, condition = _two_conditions()
    generator = CGANGenerator(x.shape[1], 2, cond_dim=8, **ARCH).cuda()
    history, discriminator = train_cgan(generator, x.cuda(), condition.cuda(), n_conditions=2, progress=False,
                                        discriminator_kwargs=ARCH,
                                        options=GANOptions(max_epochs=2, batch_size=32, mixed_precision=True))
    assert next(discriminator.parameters()).device.type == "cuda"
    assert all(torch.isfinite(torch.tensor(v)) for v in history.epochs[-1].values())
