"""Expression log-likelihoods and the KL term against torch.distributions and hand values."""

import math

import pytest
import torch
from torch.distributions import NegativeBinomial, Normal, kl_divergence

from virtualcell.nn.losses import (gaussian_log_likelihood, kl_standard_normal, negative_binomial_log_likelihood,
                                      zinb_log_likelihood)


def _counts(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.poisson(torch.rand(20, 7, generator=g, dtype=torch.float64) * 5)
    mu = torch.rand(20, 7, generator=g, dtype=torch.float64) * 4 + 0.1
    theta = torch.rand(7, generator=g, dtype=torch.float64) * 3 + 0.2
    return x, mu, theta


def test_gaussian_matches_normal():
    x, mean = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    var = torch.rand(4, dtype=torch.float64) + 0.1
    torch.testing.assert_close(gaussian_log_likelihood(x, mean, var), Normal(mean, var.sqrt()).log_prob(x))
    torch.testing.assert_close(gaussian_log_likelihood(x, mean, 2.0), Normal(mean, math.sqrt(2.0)).log_prob(x))
    # unit variance: scGen's 0.5 * (x - x')^2 plus 0.5 log(2 pi)
    torch.testing.assert_close(-gaussian_log_likelihood(x, mean), 0.5 * (x - mean) ** 2 + 0.5 * math.log(2 * math.pi))


def test_negative_binomial_matches_torch_distributions():
    x, mu, theta = _counts()
    expected = NegativeBinomial(total_count=theta.expand_as(mu), logits=mu.log() - theta.log()).log_prob(x)
    torch.testing.assert_close(negative_binomial_log_likelihood(x, mu, theta, eps=0), expected)
    torch.testing.assert_close(negative_binomial_log_likelihood(x, mu, theta), expected, atol=1e-6, rtol=0)


def test_negative_binomial_hand_values():
    # x = 0: (theta / (theta + mu))^theta; x = 1, theta = 1, mu = 1: 1/2 * 1/2
    nb = negative_binomial_log_likelihood(torch.tensor([0.0, 1.0], dtype=torch.float64),
                                          torch.tensor([2.0, 1.0], dtype=torch.float64),
                                          torch.tensor([3.0, 1.0], dtype=torch.float64), eps=0)
    torch.testing.assert_close(nb, torch.tensor([3 * math.log(3 / 5), math.log(0.25)], dtype=torch.float64))


def test_zinb_is_the_zero_inflated_mixture():
    x, mu, theta = _counts(1)
    logits = torch.randn(20, 7, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    pi = torch.sigmoid(logits)
    nb = NegativeBinomial(total_count=theta.expand_as(mu), logits=mu.log() - theta.log()).log_prob(x)
    expected = torch.where(x == 0, torch.log(pi + (1 - pi) * nb.exp()), torch.log1p(-pi) + nb)
    torch.testing.assert_close(zinb_log_likelihood(x, mu, theta, logits, eps=0), expected)
    # no inflation (pi -> 0) is the plain NB
    no_zi = zinb_log_likelihood(x, mu, theta, torch.full_like(mu, -50.0), eps=0)
    torch.testing.assert_close(no_zi, nb)


def test_count_likelihoods_have_finite_gradients_at_zero_means():
    x = torch.tensor([[0.0, 3.0]])
    mu = torch.tensor([[0.0, 1e-12]], requires_grad=True)
    theta = torch.tensor([0.5, 2.0], requires_grad=True)
    logits = torch.zeros(1, 2, requires_grad=True)
    (negative_binomial_log_likelihood(x, mu, theta).sum() + zinb_log_likelihood(x, mu, theta, logits).sum()).backward()
    for tensor in (mu, theta, logits):
        assert torch.isfinite(tensor.grad).all()


def test_kl_matches_torch_distributions():
    mean = torch.randn(6, 3, dtype=torch.float64)
    var = torch.rand(6, 3, dtype=torch.float64) + 0.05
    expected = kl_divergence(Normal(mean, var.sqrt()), Normal(torch.zeros_like(mean), torch.ones_like(var))).sum(-1)
    torch.testing.assert_close(kl_standard_normal(mean, var), expected)
    assert kl_standard_normal(torch.zeros(2, 3), torch.ones(2, 3)).abs().max() == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_losses_keep_dtype(dtype):
    x = torch.ones(2, 3, dtype=dtype)
    assert gaussian_log_likelihood(x, x).dtype == dtype
