"""``mlp-decoder``: expression from any representation, trained on the data (Gaussian or negative binomial)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from ...component import Decoder
from ...execution import batched_apply, resolve_device, seeded
from ...nn.losses import gaussian_log_likelihood, negative_binomial_log_likelihood

__all__ = ["MLPDecoder", "mlp", "Standardize", "LIKELIHOODS"]

LIKELIHOODS = ("gaussian", "nb")


def mlp(n_in: int, n_hidden: int, n_layers: int, n_out: int, dropout: float = 0.0) -> nn.Sequential:
    """``n_layers`` x (Linear, LayerNorm, GELU, Dropout) then a Linear to ``n_out`` (0 layers: one Linear)."""
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(n_layers):
        layers += [nn.Linear(width, n_hidden), nn.LayerNorm(n_hidden), nn.GELU(), nn.Dropout(dropout)]
        width = n_hidden
    return nn.Sequential(*layers, nn.Linear(width, n_out))


def apply_head(net: nn.Module, standardize: nn.Module, z: torch.Tensor, *, n_in: int, what: str,
               device: torch.device | str | None) -> torch.Tensor:
    """``net(standardize(z))`` in eval mode, in batches: [n, n_in] -> [n, outputs]; refuses another width."""
    if z.ndim != 2 or z.shape[1] != n_in:
        raise ValueError(f"{what} was fitted on representations of {n_in} dims; got {tuple(z.shape)}.")
    was_training = net.training
    net.eval()
    try:
        return batched_apply(lambda rows: net(standardize(rows)), z.float(), batch_size=4096, device=device)
    finally:
        net.train(was_training)


class Standardize(nn.Module):
    """``(z - mean) / std`` with the training cells' statistics (buffers), so any UR's scale works."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))

    def fit(self, z: torch.Tensor) -> "Standardize":
        self.mean = z.mean(0).detach().clone()
        self.std = z.std(0).clamp_min(1e-6).detach().clone() if z.shape[0] > 1 else torch.ones_like(self.mean)
        return self

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.mean) / self.std


class MLPDecoder(Decoder):
    """``decode(z [n, d]) -> E[x | z]`` [n, genes], an MLP fitted on (representation, expression) pairs.

    Pairs with any encoder, so every manipulator runs on every representation (a
    ``PerturbationPipeline`` whose encoder has no paired decoder trains one automatically).

    Likelihoods: ``"gaussian"`` for log-normalised expression (mean and a learned per-gene variance;
    ``decode`` returns the mean); ``"nb"`` for raw counts (scVI's parameterisation: a softmax over
    genes times the cell's library, per-gene inverse dispersion; ``decode`` returns expected counts
    at the mean training library size).

    Args:
        n_hidden, n_layers, dropout: the network (LayerNorm + GELU hidden layers).
        likelihood: ``"gaussian"`` or ``"nb"``.
        lr, weight_decay, batch_size, max_epochs: AdamW training.
        device: where training runs (None: where the data is).
    """

    test_config: ClassVar[dict[str, Any]] = {"n_hidden": 16, "max_epochs": 3}

    def __init__(self, n_hidden: int = 256, n_layers: int = 2, dropout: float = 0.0, likelihood: str = "gaussian",
                 lr: float = 1e-3, weight_decay: float = 1e-6, batch_size: int = 128, max_epochs: int = 50,
                 device: str | None = None) -> None:
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}; got {likelihood!r}.")
        for name, value in (("n_hidden", n_hidden), ("batch_size", batch_size), ("max_epochs", max_epochs)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1; got {value}.")
        self.net: nn.Sequential | None = None
        self.standardize: Standardize | None = None
        self.register_buffer("dispersion", torch.zeros(0))      # log variance (gaussian) or log theta (nb), [genes]
        self.register_buffer("library_size", torch.ones(()))
        self.n_latent_in = 0

    def _build(self, n_in: int, n_out: int, seed: int = 0) -> None:
        c = self.config
        with seeded(seed):
            self.net = mlp(n_in, c["n_hidden"], c["n_layers"], n_out, c["dropout"])
        self.standardize = Standardize(n_in)
        self.n_latent_in = n_in

    def fitted_state(self) -> dict[str, Any]:
        return {**super().fitted_state(), "n_in": self.n_latent_in, "n_out": len(self.features or [])}

    def load_fitted_state(self, state: Mapping[str, Any]) -> None:
        super().load_fitted_state(state)
        self._build(int(state["n_in"]), int(state["n_out"]))

    def fit(self, z: torch.Tensor, x: torch.Tensor, features: Sequence[str], *, seed: int = 0, progress: bool = True,
            **kwargs: Any) -> "MLPDecoder":
        """Learn ``z`` [n, d] -> ``x`` [n, genes] (log-normalised, or counts for ``"nb"``).

        ``x`` may be on-disk rows (``train.disk_loader.DiskRows``, row ``i`` paired with ``z[i]``): the data
        statistics are then computed in one sequential pass and the minibatches are read from disk, in
        the in-memory order (the same fit) or, with the rows' ``loader_options``, in shuffled blocks
        (each process its shard under torchrun; gradients averaged by DistributedDataParallel).
        """
        from ...train import TrainingLoop
        from ...train.disk_loader import loader_batches
        from ...train.distributed import wrap

        c = self.config
        if z.ndim != 2 or x.ndim != 2 or z.shape[0] != x.shape[0] or x.shape[1] != len(features):
            raise ValueError(f"fit expects z [n, d], x [n, genes] with one name per gene; got z {tuple(z.shape)}, "
                             f"x {tuple(x.shape)} and {len(features)} names.")
        on_disk = not isinstance(x, torch.Tensor)   # else DiskRows: each batch is checked finite when read
        if not (torch.isfinite(z).all() and (on_disk or torch.isfinite(x).all())):
            raise ValueError("z or x has NaN or infinite values; clean the data first.")
        device = z.device if c["device"] is None else resolve_device(c["device"])
        z, x = z.to(device=device, dtype=torch.float32), x.to(device=device, dtype=torch.float32)
        stats = _statistics(x, device) if on_disk else None
        nb = c["likelihood"] == "nb"
        if nb and float(stats["min"] if on_disk else x.min()) < 0:
            raise ValueError("likelihood='nb' models non-negative counts but x has negative values; use 'gaussian'.")
        self._build(z.shape[1], x.shape[1], seed)
        self.to(device)
        self.standardize.fit(z)
        with torch.no_grad():
            last = self.net[-1]
            last.weight.mul_(0.1)
            if nb:
                share = stats["share"] if on_disk else x.sum(0) / x.sum().clamp_min(1e-8)
                last.bias.copy_(torch.log(share.clamp_min(1e-8)))
                self.library_size = (stats["library"].mean() if on_disk else x.sum(1).mean()).detach().clone()
            else:
                last.bias.copy_(stats["mean"] if on_disk else x.mean(0))
        head = _Likelihood(self.net, self.standardize, x.shape[1], nb).to(device)
        params = list(self.net.parameters()) + [head.dispersion]
        optimizer = torch.optim.AdamW(params, lr=c["lr"], weight_decay=c["weight_decay"])
        library = stats["library"] if on_disk else x.sum(1, keepdim=True)
        nll_of = wrap(head, device)     # DistributedDataParallel under torchrun, else head.forward
        batches = loader_batches(x, torch.arange(x.shape[0]), c["batch_size"], seed)   # None: in-memory order

        def step(rows: Any) -> dict[str, torch.Tensor]:
            if batches is None:
                nll = nll_of(z[rows], x[rows], library[rows])
            else:
                index = torch.as_tensor(rows.rows, device=device)
                nll = nll_of(z[index], rows.x.to(device), library[index])
            optimizer.zero_grad(set_to_none=True)
            nll.backward()
            optimizer.step()
            return {"nll": nll.detach()}

        loop = TrainingLoop(max_epochs=c["max_epochs"], batch_size=c["batch_size"], seed=seed, progress=progress,
                            desc="mlp-decoder")
        with seeded(seed):
            history = loop.run(z.shape[0], step, device=device, modules={"net": self.net}, batches=batches)
        self.dispersion = head.dispersion.detach().clone()
        self.training_history = history.record()
        last_epoch = history.epochs[-1] if history.epochs else {}
        self.training_summary = {"epochs": len(history.epochs), "seconds": round(history.seconds, 2),
                                 "nll": round(float(last_epoch.get("nll", float("nan"))), 4)}
        self.features = list(features)
        self.is_fitted = True
        return self.eval()

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Expected expression [n, genes] (log-normalised mean, or counts at the mean library for ``"nb"``)."""
        self._check_fitted()
        out = apply_head(self.net, self.standardize, z, n_in=self.n_latent_in, what="MLPDecoder", device=self.device)
        if self.config["likelihood"] == "nb":
            return torch.softmax(out, -1) * self.library_size.to(out.device)
        return out


class _Likelihood(nn.Module):
    """The training objective as one module (the net and the per-gene log dispersion [genes], a
    parameter), so DistributedDataParallel averages the gradients of both: mean NLL of a batch."""

    def __init__(self, net: nn.Module, standardize: nn.Module, n_genes: int, nb: bool) -> None:
        super().__init__()
        self.net, self.standardize, self.nb = net, standardize, nb
        self.dispersion = nn.Parameter(torch.zeros(n_genes))

    def forward(self, z: torch.Tensor, x: torch.Tensor, library: torch.Tensor) -> torch.Tensor:
        out = self.net(self.standardize(z))
        if self.nb:
            mu = torch.softmax(out, -1) * library
            return -negative_binomial_log_likelihood(x, mu, torch.exp(self.dispersion)).sum(-1).mean()
        return -gaussian_log_likelihood(x, out, torch.exp(self.dispersion)).sum(-1).mean()


def _statistics(rows: Any, device: torch.device, chunk: int = 8192) -> dict[str, torch.Tensor]:
    """One sequential pass over on-disk rows [n, genes]: per-gene ``mean`` and ``share`` of all counts,
    per-cell ``library`` [n, 1] (row sums) and the ``min`` value; float64 sums, float32 results."""
    n = rows.shape[0]
    total = torch.zeros(rows.shape[1], dtype=torch.float64, device=device)
    library, low = [], float("inf")
    for _, x in rows.chunks(chunk):
        x = x.to(device)
        total += x.double().sum(0)
        library.append(x.sum(1, keepdim=True))
        low = min(low, float(x.min())) if x.numel() else low
    return {"mean": (total / max(n, 1)).float(), "share": (total / total.sum().clamp_min(1e-8)).float(),
            "library": torch.cat(library), "min": torch.tensor(low)}
