"""The scGen variational autoencoder as a plain torch module (no data handling, no training loop).

``q(z | x) = N(mean(x), diag(var(x)))`` and ``p(x | z)`` Gaussian, negative binomial or
zero-inflated negative binomial, both halves multilayer perceptrons as in scGen (scvi-tools'
``FCLayers``): ``n_layers`` x (Linear -> BatchNorm1d(eps=1e-3, momentum=0.01) -> LeakyReLU ->
Dropout). Dropout and the reparameterisation noise draw from an explicit ``torch.Generator``, so a
seed fixes every random number and a checkpoint can save the generator and resume bit for bit.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from .losses import (gaussian_log_likelihood, kl_standard_normal, negative_binomial_log_likelihood,
                     zinb_log_likelihood)

__all__ = ["LIKELIHOODS", "OUTPUT_ACTIVATIONS", "MLP", "GaussianEncoderNet", "ExpressionDecoderNet", "VAEModule",
           "seeded_dropout"]

LIKELIHOODS = ("gaussian", "nb", "zinb")
OUTPUT_ACTIVATIONS = ("leaky_relu", "identity")
_VAR_EPS = 1e-4  # floor of the posterior variance (scvi-tools' Encoder.var_eps)


def seeded_dropout(h: torch.Tensor, p: float, generator: torch.Generator | None) -> torch.Tensor:
    """Inverted dropout of ``h`` with drop probability ``p``, its mask drawn from ``generator``."""
    if p <= 0:
        return h
    keep = torch.empty_like(h).bernoulli_(1.0 - p, generator=generator)
    return h * keep * (1.0 / (1.0 - p))


class MLP(nn.Module):
    """Layers of Linear -> BatchNorm1d -> LeakyReLU -> Dropout through ``sizes``: [n, sizes[0]] -> [n, sizes[-1]].

    ``sizes = [n_in]`` is the identity (no layer).
    """

    def __init__(self, sizes: list[int], dropout: float) -> None:
        super().__init__()
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(b, eps=1e-3, momentum=0.01) for b in sizes[1:])
        self.dropout = float(dropout)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        h = x
        for linear, norm in zip(self.linears, self.norms):
            h = F.leaky_relu(norm(linear(h)), 0.01)
            if self.training:
                h = seeded_dropout(h, self.dropout, generator)
        return h


class GaussianEncoderNet(nn.Module):
    """``x`` [n, genes] -> posterior ``mean`` [n, d] and ``var`` [n, d] (``exp(.) + 1e-4``)."""

    def __init__(self, n_input: int, n_latent: int, n_hidden: int, n_layers: int, dropout: float) -> None:
        super().__init__()
        self.body = MLP([n_input] + [n_hidden] * n_layers, dropout)
        self.mean = nn.Linear(n_hidden, n_latent)
        self.log_var = nn.Linear(n_hidden, n_latent)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x, generator)
        return self.mean(h), torch.exp(self.log_var(h)) + _VAR_EPS


class ExpressionDecoderNet(nn.Module):
    """``z`` [n, d] -> the parameters of ``p(x | z)`` over ``n_output`` genes, through ``n_layers`` layers.

    Gaussian (unit variance, as scGen) with ``output_activation="leaky_relu"``: scGen's decoder,
    ``n_layers`` MLP layers ``d -> n_hidden ... -> genes`` whose last one, like the others, has batch
    norm, LeakyReLU and dropout. Otherwise ``n_layers - 1`` MLP layers and a linear head: the
    Gaussian mean (``"identity"``), or for NB / ZINB ``mu = library * softmax(.)`` (scVI), a
    gene-wise inverse dispersion ``theta`` and, for ZINB, the dropout logits. The buffer
    ``library_size`` (mean counts per training cell) is the library :meth:`expected` uses.
    """

    def __init__(self, n_latent: int, n_output: int, n_hidden: int, n_layers: int, dropout: float,
                 likelihood: str = "gaussian", output_activation: str = "leaky_relu") -> None:
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}; got {likelihood!r}.")
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}; got {output_activation!r}.")
        self.likelihood, self.output_activation = likelihood, output_activation
        hidden = [n_latent] + [n_hidden] * (n_layers - 1)
        if likelihood == "gaussian" and output_activation == "leaky_relu":
            self.body = MLP(hidden + [n_output], dropout)
            self.out = None
        else:
            self.body = MLP(hidden, dropout)
            self.out = nn.Linear(hidden[-1], n_output)  # Gaussian mean, or NB/ZINB scale logits
        if likelihood != "gaussian":
            self.log_theta = nn.Parameter(torch.zeros(n_output))
            self.register_buffer("library_size", torch.ones(()))
        if likelihood == "zinb":
            self.zi_logits = nn.Linear(hidden[-1], n_output)

    @torch.no_grad()
    def initialize_output(self, x: torch.Tensor, rows: torch.Tensor | None = None, chunk: int = 4096) -> None:
        """Data-dependent start: the output layer begins at each gene's mean (and spread) over ``x[rows]``.

        Without it the per-gene offsets of the last layer start at 0 and Adam moves them by about
        ``lr`` per step, so a short run ends before the decoder even reaches the gene means.
        Computed chunk by chunk, without copying ``x`` [n, genes].
        """
        rows = torch.arange(x.shape[0], device=x.device) if rows is None else rows
        total, squares, shares = (torch.zeros(x.shape[1], dtype=torch.float64, device=x.device) for _ in range(3))
        for part in rows.split(chunk):
            block = x[part].double()
            total += block.sum(0)
            squares += (block**2).sum(0)
            shares += (block / block.sum(1, keepdim=True).clamp_min(1e-8)).sum(0)
        n = rows.numel()
        mean = total / n
        std = ((squares - n * mean**2).clamp_min(0) / max(n - 1, 1)).sqrt().clamp_min(1e-3)
        if self.likelihood != "gaussian":
            self.out.bias.copy_(torch.log(shares / n + 1e-8))
        elif self.out is None:
            self.body.norms[-1].bias.copy_(mean)
            self.body.norms[-1].weight.copy_(std)
        else:
            self.out.bias.copy_(mean)

    def forward(self, z: torch.Tensor, generator: torch.Generator | None = None,
                library: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Likelihood parameters, each [n, genes] (``theta`` [genes]); ``library`` [n, 1] for count models."""
        h = self.body(z, generator)
        if self.likelihood == "gaussian":
            return {"mean": h if self.out is None else self.out(h)}
        library = self.library_size if library is None else library
        params = {"mu": library * torch.softmax(self.out(h).float(), dim=-1), "theta": torch.exp(self.log_theta)}
        if self.likelihood == "zinb":
            params["zi_logits"] = self.zi_logits(h)
        return params

    def log_likelihood(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """``log p(x | z)`` summed over genes, [n], computed in float32."""
        p = {k: v.float() for k, v in params.items()}
        if self.likelihood == "gaussian":
            return gaussian_log_likelihood(x, p["mean"]).sum(-1)
        if self.likelihood == "nb":
            return negative_binomial_log_likelihood(x, p["mu"], p["theta"]).sum(-1)
        return zinb_log_likelihood(x, p["mu"], p["theta"], p["zi_logits"]).sum(-1)

    def expected(self, z: torch.Tensor) -> torch.Tensor:
        """``E[x | z]`` [n, genes]: the Gaussian mean, NB ``mu`` or ZINB ``(1 - pi) mu`` (at ``library_size``)."""
        params = self(z)
        if self.likelihood == "gaussian":
            return params["mean"].float()
        if self.likelihood == "nb":
            return params["mu"]
        return torch.sigmoid(-params["zi_logits"].float()) * params["mu"]


class VAEModule(nn.Module):
    """Encoder and decoder networks plus the negative ELBO.

    ``losses(x)`` returns per-batch means of ``reconstruction = -log p(x | z)`` (summed over genes),
    ``kl = KL(q(z | x) || N(0, I))`` and ``loss = reconstruction + kl_weight * kl``. Count models
    feed ``log1p(x)`` to the encoder and use each cell's observed library ``sum(x)`` (scVI).
    """

    def __init__(self, n_input: int, n_latent: int, n_hidden: int, n_layers: int, dropout: float,
                 likelihood: str = "gaussian", output_activation: str = "leaky_relu") -> None:
        super().__init__()
        self.encoder = GaussianEncoderNet(n_input, n_latent, n_hidden, n_layers, dropout)
        self.decoder = ExpressionDecoderNet(n_latent, n_input, n_hidden, n_layers, dropout, likelihood,
                                            output_activation)
        self.counts = likelihood != "gaussian"

    def posterior(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``mean``, ``var`` [n, d] of ``q(z | x)`` for ``x`` [n, genes] (raw counts for count models)."""
        return self.encoder(torch.log1p(x) if self.counts else x, generator)

    def losses(self, x: torch.Tensor, kl_weight: float, generator: torch.Generator | None = None, *,
               sample: bool = True, autocast: contextlib.AbstractContextManager | None = None
               ) -> dict[str, torch.Tensor]:
        """Scalar ``loss``, ``reconstruction`` and ``kl`` for a batch ``x`` [n, genes].

        ``sample=False`` decodes the posterior mean (deterministic, for validation); ``autocast`` is
        a context manager for the network passes (the likelihood stays in float32).
        """
        with autocast if autocast is not None else contextlib.nullcontext():
            mean, var = self.posterior(x, generator)
            z = mean
            if sample:
                noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
                z = mean + var.sqrt() * noise
            library = x.sum(-1, keepdim=True) if self.counts else None
            params = self.decoder(z, generator, library)
        reconstruction = -self.decoder.log_likelihood(x, params).mean()
        kl = kl_standard_normal(mean.float(), var.float()).mean()
        return {"loss": reconstruction + kl_weight * kl, "reconstruction": reconstruction, "kl": kl}

    @torch.no_grad()
    def recalibrate_batch_norm(self, x: torch.Tensor, rows: torch.Tensor | None = None, chunk: int = 4096) -> None:
        """Set every BatchNorm's running statistics to the mean / variance of its inputs on ``x[rows]``.

        The passes run as at inference (no dropout, the decoder fed posterior means), in chunks of
        ``chunk`` cells (exact up to ``chunk`` cells, else the average over chunks). With scGen's
        momentum of 0.01 the running averages need thousands of steps to forget their initial
        values; a short, fast training run leaves them stale, which this one pass fixes.
        """
        rows = torch.arange(x.shape[0], device=x.device) if rows is None else rows
        norms = [m for m in self.modules() if isinstance(m, nn.BatchNorm1d)]
        momenta = [m.momentum for m in norms]
        self.eval()
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # cumulative average over the chunks
            norm.train()
        try:
            for part in torch.tensor_split(rows, max(1, -(-rows.numel() // chunk))):
                self.decoder(self.posterior(x[part])[0])
        finally:
            for norm, momentum in zip(norms, momenta):
                norm.momentum = momentum
                norm.eval()
