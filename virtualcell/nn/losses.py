"""Log-likelihoods of expression models and the KL divergence of a diagonal Gaussian to N(0, I).

Every log-likelihood is element-wise (``[n, genes]``, sum over genes for a cell's likelihood), in
float32 or float64, and differentiable in its parameters. The count models use scVI's
parameterisation (Lopez et al. 2018): mean ``mu`` and inverse dispersion ``theta`` (variance
``mu + mu^2 / theta``), and for the zero-inflated model the logits of the dropout probability.
Counts need not be integers (``lgamma`` interpolates), but they must be non-negative.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "gaussian_log_likelihood",
    "negative_binomial_log_likelihood",
    "zinb_log_likelihood",
    "kl_standard_normal",
]

_LOG_2PI = math.log(2 * math.pi)


def gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor,
                            var: torch.Tensor | float = 1.0) -> torch.Tensor:
    """``log N(x; mean, var)`` element-wise: ``x``, ``mean`` [n, g]; ``var`` broadcastable (> 0).

    With ``var = 1`` the negative log-likelihood is scGen's reconstruction loss
    ``0.5 * (x - mean)^2`` plus the constant ``0.5 * log(2 pi)``.
    """
    if isinstance(var, (int, float)):  # a constant variance: fewer passes over [n, g]
        squared = (x - mean) ** 2 if var == 1 else (x - mean) ** 2 / var
        return -0.5 * (squared + (math.log(var) + _LOG_2PI))
    return -0.5 * ((x - mean) ** 2 / var + torch.log(var) + _LOG_2PI)


def negative_binomial_log_likelihood(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor,
                                     eps: float = 1e-8) -> torch.Tensor:
    """``log NB(x; mu, theta)`` element-wise: counts ``x`` [n, g] >= 0, mean ``mu`` [n, g] >= 0,
    inverse dispersion ``theta`` (> 0, [g] or [n, g]).

    ``NB(x) = Gamma(x + theta) / (Gamma(theta) x!) (theta / (theta + mu))^theta (mu / (theta + mu))^x``.
    """
    log_theta_mu = torch.log(theta + mu + eps)
    return (theta * (torch.log(theta + eps) - log_theta_mu)
            + x * (torch.log(mu + eps) - log_theta_mu)
            + torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1))


def zinb_log_likelihood(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, zi_logits: torch.Tensor,
                        eps: float = 1e-8) -> torch.Tensor:
    """Zero-inflated NB, element-wise: ``pi = sigmoid(zi_logits)`` [n, g] is the dropout probability.

    ``p(0) = pi + (1 - pi) NB(0)`` and ``p(x > 0) = (1 - pi) NB(x)``, computed in log space with
    softplus and logaddexp for stability.
    """
    log_pi = -F.softplus(-zi_logits)                                  # log sigmoid(l)
    log_one_minus_pi = -F.softplus(zi_logits)                         # log (1 - sigmoid(l))
    log_theta_mu = torch.log(theta + mu + eps)
    nb_zero = theta * (torch.log(theta + eps) - log_theta_mu)         # log NB(0)
    case_zero = torch.logaddexp(log_pi, log_one_minus_pi + nb_zero)
    case_nonzero = (log_one_minus_pi + nb_zero
                    + x * (torch.log(mu + eps) - log_theta_mu)
                    + torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1))
    return torch.where(x > eps, case_nonzero, case_zero)


def kl_standard_normal(mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """``KL(N(mean, diag(var)) || N(0, I))`` per row: ``mean``, ``var`` [n, d] -> [n]."""
    return 0.5 * (var + mean**2 - 1.0 - torch.log(var)).sum(-1)
