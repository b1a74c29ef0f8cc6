"""The conditional GAN's critic: a projection critic with an auxiliary classifier, and the WGAN-GP penalty."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..nn.layers.cell_groups import feature_spread
from ..nn.layers.trunk import CGANTrunk

__all__ = ["CGANDiscriminator", "gradient_penalty"]


class CGANDiscriminator(nn.Module):
    """``forward(x [n, d], condition [n]) -> (score [n], logits [n, n_conditions])``.

    ``score = w . h + e_condition . h`` (a projection critic) and ``logits = classifier(h)``, with
    ``h`` from an unconditioned :class:`CGANTrunk` of the generator's shape (attention written out
    so that the gradient penalty can differentiate it twice). With ``n_components`` the trunk reads
    the standardised input projected on its first principal axes (buffers set by
    :meth:`fit_inputs`), the space the energy-distance metric judges cells in.
    """

    def __init__(self, n_features: int, n_conditions: int, *, n_components: int | None = None, n_groups: int = 32,
                 token_dim: int = 32, n_heads: int = 4, n_blocks: int = 1, hidden: int = 256, n_layers: int = 2,
                 dropout: float = 0.0) -> None:
        super().__init__()
        inputs = n_features if n_components is None else min(int(n_components), n_features)
        self.register_buffer("input_mean", torch.zeros(n_features))
        self.register_buffer("input_std", torch.ones(n_features))
        self.register_buffer("axes", torch.eye(n_features, inputs) if n_components is not None else torch.zeros(0, 0))
        self.trunk = CGANTrunk(inputs, cond_dim=0, n_groups=n_groups, token_dim=token_dim, n_heads=n_heads,
                               n_blocks=n_blocks, hidden=hidden, n_layers=n_layers, dropout=dropout,
                               fused_attention=False)
        self.critic = nn.Linear(hidden, 1)
        self.projection = nn.Embedding(n_conditions, hidden)
        nn.init.normal_(self.projection.weight, std=1.0 / math.sqrt(hidden))
        self.classifier = nn.Linear(hidden, n_conditions)

    @torch.no_grad()
    def fit_inputs(self, x: torch.Tensor, seed: int = 0) -> None:
        """Standardise like the training cells ``x`` [n, d] (and find their principal axes)."""
        from ..nn.pca import fit_pca

        mean, std = feature_spread(x)
        if self.axes.numel() == 0:
            self.trunk.set_standardisation(mean, std)
            return
        self.input_mean, self.input_std = mean, std
        _, components, variance = fit_pca((x.float() - mean) / std, self.axes.shape[1], seed=seed)
        self.axes = components.T.contiguous().to(x.device)
        self.trunk.set_standardisation(torch.zeros_like(variance), variance.sqrt())

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.axes.numel():
            x = ((x - self.input_mean) / self.input_std) @ self.axes
        _, h = self.trunk(x)
        score = self.critic(h).squeeze(-1) + (self.projection(condition) * h).sum(-1)
        return score, self.classifier(h)


def gradient_penalty(discriminator: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, Any]],
                     real: torch.Tensor, fake: torch.Tensor, condition: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP penalty ``mean_i (||grad_x D(x_hat_i, c_i)||_2 - 1)^2`` (Gulrajani et al. 2017).

    ``real``, ``fake`` [n, d] are cells of the same conditions ``condition`` [n]; ``x_hat_i =
    eps_i real_i + (1 - eps_i) fake_i`` with one ``eps_i ~ U(0, 1)`` per cell. The norm is taken
    per cell over its features, in float32, and the graph is kept so that the penalty trains ``D``.
    """
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty needs real and fake of one shape; got {tuple(real.shape)} "
                         f"and {tuple(fake.shape)}.")
    eps = torch.rand(real.shape[0], 1, generator=generator, device=real.device, dtype=torch.float32)
    x_hat = (eps * real.detach().float() + (1 - eps) * fake.detach().float()).requires_grad_(True)
    with torch.autocast(device_type=real.device.type, enabled=False):
        score, _ = discriminator(x_hat, condition)
        (grad,) = torch.autograd.grad(score.float().sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
