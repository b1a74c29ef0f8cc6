"""scGen's variational autoencoder as an encoder (Lotfollahi et al. 2019), trained fast.

The whole VAE is trained at once by :class:`virtualcell.train.TrainingLoop` on data resident on
the device (no DataLoader); ``encode`` returns the posterior mean and ``paired_decoder`` hands out
the decoder half as its own component (:class:`virtualcell.instruments.decoders.vae.VAEDecoder`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from ..component import Decoder, Encoder
from ..execution import autocast, batched_apply, make_generator, resolve_device, seeded
from ..nn.vae_module import LIKELIHOODS, OUTPUT_ACTIVATIONS, VAEModule

__all__ = ["VAEEncoder", "SCGEN_SETTINGS"]

#: scGen's settings where this encoder's defaults differ (scgen 2.1 on scvi-tools 0.19):
#: ``VAEEncoder(**SCGEN_SETTINGS)`` or ``VAEEncoder.scgen()`` trains like scGen.
SCGEN_SETTINGS: dict[str, Any] = {"dropout": 0.2, "batch_size": 32, "lr": 1e-3, "adam_eps": 0.01,
                                  "max_epochs": 100, "patience": 25}


class VAEEncoder(Encoder):
    """A VAE whose posterior mean is the representation: ``encode(x [n, genes]) -> z [n, n_latent]``.

    The network is scGen's: an encoder of ``n_layers`` x ``n_hidden`` (Linear, BatchNorm,
    LeakyReLU, dropout) with a diagonal Gaussian posterior, a decoder of ``n_layers`` such layers
    ending at the genes, and the loss ``-log p(x | z) + kl_weight * KL`` with the reconstruction
    summed over genes (Gaussian with unit variance: scGen's ``0.5 * sum (x - x')^2``).

    Training differs from scGen in ways measured on Kang's CD4T split
    (``benchmarks/bench_vae_speed.py``, whose docstring has the numbers): batches of 128 with lr
    2e-3, Adam ``eps`` 1e-8 (scvi-tools' 0.01 damps the steps of parameters with small gradients),
    no dropout and a fixed budget of 40 epochs (the validation loss bottoms out near epoch 10, long
    before the latent arithmetic is good, so early stopping on it hurts). The last layer starts at
    the genes' means and spreads, and after training every BatchNorm gets exact statistics of the
    training cells (scGen's momentum of 0.01 leaves them stale after a short run).
    ``VAEEncoder.scgen()`` trains with scGen's settings instead (``SCGEN_SETTINGS``).

    Args:
        n_hidden, n_layers, n_latent: network shape (scGen: 800, 2, 100).
        dropout: dropout after every hidden layer (scGen: 0.2; 0 trains faster at better quality).
        kl_weight: weight of the KL term (scGen's ``alpha = 5e-5``).
        likelihood: ``"gaussian"`` for log-normalised data (scGen, the default); ``"nb"`` or
            ``"zinb"`` for raw, non-negative counts: the encoder sees ``log1p(x)``, the decoder a
            per-cell library ``sum(x)`` (scVI) and ``decode`` returns expected counts at the mean
            training library size. In a ``PerturbationPipeline`` pass ``preprocess="counts"`` and an
            AnnData whose ``X`` (or ``layer``) holds raw counts; predictions are then counts too.
        output_activation: Gaussian decoder output: ``"leaky_relu"`` (scGen: the last layer, like the
            hidden ones, has batch norm, LeakyReLU and dropout; for non-negative data) or
            ``"identity"`` (a linear head, for scaled data with negative values). Count models
            always use scVI's softmax head.
        lr, batch_size, max_epochs: Adam's learning rate, cells per step, epochs.
        patience, min_delta: early stopping on the validation loss (None: train all ``max_epochs``);
            with early stopping the best epoch's weights are kept.
        weight_decay, adam_eps: Adam's L2 penalty (scvi-tools: 1e-6) and epsilon.
        validation_fraction: cells held out to report (and, with ``patience``, early-stop on) the
            validation loss; 0 trains on every cell.
        device: where training runs (``"cpu"``, ``"cuda"``, ``"auto"``; None: where the data is, so a
            pipeline's ``device`` decides); the fitted model stays there.
        mixed_precision: bf16 autocast on CPU, bf16 (or fp16 with a GradScaler) on CUDA. On CPUs
            without AMX, bf16 is slower than float32.
        checkpoint_dir: write a resumable checkpoint every epoch and resume from it when present.
    """

    test_config: ClassVar[dict[str, Any]] = {"n_hidden": 16, "n_latent": 4, "max_epochs": 2, "batch_size": 32}

    def __init__(self, n_hidden: int = 800, n_layers: int = 2, n_latent: int = 100, dropout: float = 0.0,
                 kl_weight: float = 5e-5, likelihood: str = "gaussian", output_activation: str = "leaky_relu",
                 lr: float = 2e-3, batch_size: int = 128, max_epochs: int = 40, patience: int | None = None,
                 min_delta: float = 0.0, weight_decay: float = 1e-6, adam_eps: float = 1e-8,
                 validation_fraction: float = 0.1, device: str | None = None, mixed_precision: bool = False,
                 checkpoint_dir: str | None = None) -> None:
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}; got {likelihood!r}.")
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}; got {output_activation!r}.")
        for name, value in (("n_hidden", n_hidden), ("n_layers", n_layers), ("n_latent", n_latent),
                            ("batch_size", batch_size), ("max_epochs", max_epochs)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1; got {value}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1); got {dropout}.")
        if not 0.0 <= validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must lie in [0, 1); got {validation_fraction}.")
        self.vae: VAEModule | None = None
        self.history = None  # the TrainingLoop's record of the last fit

    @classmethod
    def scgen(cls, **overrides: Any) -> "VAEEncoder":
        """A VAE trained with scGen's own settings (``SCGEN_SETTINGS``), slower than the defaults."""
        return cls(**{**SCGEN_SETTINGS, **overrides})

    # -- shape -----------------------------------------------------------------------------------
    @property
    def n_latent(self) -> int:
        return int(self.config["n_latent"])

    def _build(self, n_input: int, seed: int = 0) -> VAEModule:
        c = self.config
        with seeded(seed):  # seeded initial weights, global RNG untouched
            return VAEModule(n_input, c["n_latent"], c["n_hidden"], c["n_layers"], c["dropout"],
                             c["likelihood"], c["output_activation"])

    def fitted_state(self) -> dict[str, Any]:
        return {**super().fitted_state(), "n_input": len(self.features or [])}

    def load_fitted_state(self, state: Mapping[str, Any]) -> None:
        super().load_fitted_state(state)
        self.vae = self._build(int(state["n_input"]))

    # -- data checks -----------------------------------------------------------------------------
    def _check_input(self, x: torch.Tensor, n_genes: int | None = None) -> None:
        if x.ndim != 2:
            raise ValueError(f"VAEEncoder expects x [cells, genes]; got shape {tuple(x.shape)}.")
        if n_genes is not None and x.shape[1] != n_genes:
            raise ValueError(f"VAEEncoder was fitted on {n_genes} genes; got x with {x.shape[1]} columns.")
        if not torch.isfinite(x).all():
            raise ValueError("x has NaN or infinite values; clean or impute the data before the VAE.")
        likelihood, activation = self.config["likelihood"], self.config["output_activation"]
        if likelihood != "gaussian" or activation == "leaky_relu":
            low = float(x.min()) if x.numel() else 0.0
            if low < 0 and likelihood != "gaussian":
                raise ValueError(f"likelihood={likelihood!r} models non-negative counts, but x has negative values "
                                 f"(min {low:.3g}). Pass raw counts (PerturbationPipeline(preprocess='counts') on an "
                                 "AnnData of counts) or use likelihood='gaussian' for normalised/scaled data.")
            if low < 0:
                raise ValueError(f"output_activation='leaky_relu' cannot reconstruct negative values, but x has some "
                                 f"(min {low:.3g}, e.g. scaled data). Pass output_activation='identity'.")

    # -- training --------------------------------------------------------------------------------
    def fit(self, x: torch.Tensor, features: Sequence[str], *, seed: int = 0, progress: bool = True,
            **kwargs: Any) -> "VAEEncoder":
        """Train the whole VAE on ``x`` [n, genes] (columns named by ``features``); returns self.

        The data is moved once to ``device`` and minibatches are index gathers there. The training
        record (per-epoch losses, best epoch, seconds) is kept in ``self.history``.
        """
        from ..train import TrainingLoop, split_validation
        from ..train.disk_loader import loader_batches
        from ..train.distributed import rank, wrap

        if x.ndim != 2 or x.shape[1] != len(features):
            raise ValueError(f"x has shape {tuple(x.shape)} but {len(features)} feature names were given; "
                             "expected x [cells, genes] with one name per column.")
        if x.shape[0] < 2:
            raise ValueError(f"VAEEncoder needs at least 2 cells to train (batch norm); got {x.shape[0]}.")
        if isinstance(x, torch.Tensor):  # else on-disk rows (train.disk_loader.DiskRows), checked per batch
            self._check_input(x)
        c = self.config
        device = x.device if c["device"] is None else resolve_device(c["device"])
        x = x.to(device=device, dtype=torch.float32)
        on_disk = not isinstance(x, torch.Tensor) and x.shape[0] < 2**31   # int32 rows: 4 bytes a cell, same draws
        train_rows, val_rows = (r.to(device) for r in split_validation(
            x.shape[0], c["validation_fraction"], torch.Generator().manual_seed(seed),
            dtype=torch.int32 if on_disk else torch.int64))
        vae = self._build(x.shape[1], seed).to(device)
        if getattr(x, "loader_options", None) is not None:   # the loader reads sorted rows: fewer disk reads
            train_rows, val_rows = _sorted(train_rows), _sorted(val_rows)   # the shuffled order let go
        batches = loader_batches(x, train_rows, c["batch_size"], seed)   # None: rows indexed as in memory
        pass_rows = train_rows
        vae.decoder.initialize_output(x, pass_rows)
        if vae.counts:  # the library decode() uses: mean counts per training cell
            library = sum(float(x[part].sum()) for part in pass_rows.split(4096)) / train_rows.numel()
            vae.decoder.library_size.fill_(library)
        self.vae = vae

        optimizer = _adam(vae, c, device)
        use_amp = bool(c["mixed_precision"])
        amp_dtype = None
        if use_amp and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            amp_dtype = torch.float16
        scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
        noise = make_generator(seed + rank(), device)
        kl_weight = float(c["kl_weight"])
        losses_of = wrap(vae, device, "losses")   # DistributedDataParallel under torchrun, else vae.losses

        def step(rows: Any) -> dict[str, torch.Tensor]:
            batch = x[train_rows[rows]] if batches is None else rows.x
            losses = losses_of(batch, kl_weight, noise, autocast=autocast(device, use_amp, amp_dtype))
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(losses["loss"]).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                losses["loss"].backward()
                optimizer.step()
            return {k: v.detach() for k, v in losses.items()}

        def validate() -> dict[str, torch.Tensor]:
            total = torch.zeros((), device=device)
            for begin in range(0, val_rows.numel(), 4096):
                rows = val_rows[begin:begin + 4096]
                total = total + vae.losses(x[rows], kl_weight, sample=False)["loss"] * rows.numel()
            return {"val_loss": total / val_rows.numel()}

        loop = TrainingLoop(max_epochs=c["max_epochs"], batch_size=c["batch_size"],
                            patience=c["patience"] if val_rows.numel() else None, min_delta=c["min_delta"],
                            seed=seed, checkpoint_dir=c["checkpoint_dir"], progress=progress, desc="VAE",
                            checkpoint_every_steps=getattr(x, "checkpoint_every_steps", None))
        self.history = loop.run(train_rows.numel(), step, device=device,
                                validate=validate if val_rows.numel() else None,
                                modules={"vae": vae}, optimizers={"adam": optimizer}, generators={"noise": noise},
                                batches=batches)
        vae.recalibrate_batch_norm(x, pass_rows)
        self.training_history = self.history.record()
        last = self.history.epochs[-1] if self.history.epochs else {}
        self.training_summary = {"epochs": len(self.history.epochs), "best_epoch": self.history.best_epoch,
                                 "stopped_early": self.history.stopped_early,
                                 "last_epoch": {k: round(float(v), 4) for k, v in last.items()
                                                if k != "epoch" and math.isfinite(v)}}
        self.features = list(features)
        self.is_fitted = True
        return self

    # -- inference -------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior means [n, n_latent] of ``x`` [n, genes] (deterministic: no dropout, no sampling)."""
        self._check_fitted()
        self._check_input(x, len(self.features or []))
        was_training = self.vae.training
        self.vae.eval()
        try:
            z = batched_apply(lambda rows: self.vae.posterior(rows)[0], x.float(), batch_size=4096,
                              device=self.device)
        finally:
            self.vae.train(was_training)
        return z

    def paired_decoder(self) -> Decoder:
        """The decoder half (its own copy of the weights): ``decode(z) -> expected expression``."""
        from ..instruments.decoders.vae import VAEDecoder

        return VAEDecoder.from_encoder(self)


def _sorted(rows: torch.Tensor) -> torch.Tensor:
    """``rows`` [n] sorted; on the CPU by numpy, which keeps no int64 index array beside them (torch's sort does)."""
    return torch.from_numpy(np.sort(rows.numpy())) if rows.device.type == "cpu" else rows.sort().values


def _adam(vae: VAEModule, c: Mapping[str, Any], device: torch.device) -> torch.optim.Adam:
    """Adam, fused into one kernel where this torch supports it (CUDA; CPU from torch 2.4)."""
    kwargs = {"lr": c["lr"], "eps": c["adam_eps"], "weight_decay": c["weight_decay"]}
    if device.type in ("cpu", "cuda"):
        try:
            return torch.optim.Adam(vae.parameters(), fused=True, **kwargs)
        except (RuntimeError, TypeError):
            pass
    return torch.optim.Adam(vae.parameters(), **kwargs)
