"""``label-decoder``: a classifier over any representation, with calibrated probabilities.

Calibration is temperature scaling (Guo et al. 2017): the network is trained on all but a held-out
share of the training cells (``calibration_fraction``, drawn per class), then one temperature
``T`` is fitted on the held-out cells by minimising their negative log-likelihood, so that
``softmax(logits / T)`` says how often the prediction is right. ``decode`` returns the calibrated
logits ``logits / T``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from ...component import Decoder
from ...execution import resolve_device, seeded
from .mlp import Standardize, apply_head, mlp

__all__ = ["LabelDecoder", "fit_temperature", "expected_calibration_error"]


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, *, steps: int = 200) -> float:
    """The temperature ``T > 0`` minimising the NLL of ``softmax(logits / T)`` for ``labels`` [n] (LBFGS on log T)."""
    if logits.shape[0] == 0:
        return 1.0
    log_t = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=steps, line_search_fn="strong_wolfe")
    logits, labels = logits.detach().float().cpu(), labels.cpu()

    def closure():
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().clamp(-5, 5).exp())


def expected_calibration_error(probabilities: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """ECE: the confidence-weighted gap between confidence and accuracy over ``n_bins`` equal-width bins."""
    confidence, predicted = probabilities.max(1)
    correct = (predicted == labels).float()
    edges = torch.linspace(0, 1, n_bins + 1)
    total = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            total += float(inside.float().mean() * (confidence[inside].mean() - correct[inside].mean()).abs())
    return total


def _calibration_split(y: torch.Tensor, fraction: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, held-out) rows with about ``fraction`` of every class held out (classes of < 5 cells stay in train)."""
    train, held = [], []
    for label in torch.unique(y):
        rows = torch.nonzero(y == label).squeeze(1)
        rows = rows[torch.randperm(rows.numel(), generator=generator)]
        n_held = int(round(rows.numel() * fraction)) if rows.numel() >= 5 else 0
        held.append(rows[:n_held])
        train.append(rows[n_held:])
    return torch.cat(train).sort().values, torch.cat(held).sort().values


class LabelDecoder(Decoder):
    """``decode(z [n, d]) -> calibrated logits [n, classes]``; ``output_features`` are the class names.

    ``fit(z, y, classes)`` takes ``y`` as class ids [n] (long) or class scores / one-hot [n, classes]
    (their argmax). ``predict_proba(z)`` gives calibrated probabilities, ``predict(z)`` class ids.

    Args:
        n_hidden, n_layers, dropout: the classifier (0 layers: multinomial logistic regression).
        lr, weight_decay, batch_size, max_epochs: AdamW training with cross-entropy.
        min_steps: small data trains more epochs than ``max_epochs``, for at least this many steps.
        calibration_fraction: share of each class held out to fit the temperature (0: T = 1).
        device: where training runs (None: where the data is).
    """

    output_type: ClassVar[str] = "logits"
    test_config: ClassVar[dict[str, Any]] = {"n_hidden": 16, "max_epochs": 5, "min_steps": 10}

    def __init__(self, n_hidden: int = 128, n_layers: int = 1, dropout: float = 0.1, lr: float = 1e-3,
                 weight_decay: float = 1e-4, batch_size: int = 128, max_epochs: int = 30,
                 min_steps: int = 500, calibration_fraction: float = 0.1, device: str | None = None) -> None:
        super().__init__()
        if not 0.0 <= calibration_fraction < 0.5:
            raise ValueError(f"calibration_fraction must lie in [0, 0.5); got {calibration_fraction}.")
        if int(max_epochs) < 1 or int(batch_size) < 1:
            raise ValueError("max_epochs and batch_size must be >= 1.")
        self.net: nn.Sequential | None = None
        self.standardize: Standardize | None = None
        self.register_buffer("log_temperature", torch.zeros(()))
        self.n_latent_in = 0
        self.calibration: dict[str, Any] = {}

    def _build(self, n_in: int, n_classes: int, seed: int = 0) -> None:
        c = self.config
        with seeded(seed):
            self.net = mlp(n_in, c["n_hidden"], c["n_layers"], n_classes, c["dropout"])
        self.standardize = Standardize(n_in)
        self.n_latent_in = n_in

    @property
    def temperature(self) -> float:
        return float(self.log_temperature.exp())

    def fitted_state(self) -> dict[str, Any]:
        return {**super().fitted_state(), "n_in": self.n_latent_in, "n_classes": len(self.features or []),
                "calibration": self.calibration}

    def load_fitted_state(self, state: Mapping[str, Any]) -> None:
        super().load_fitted_state(state)
        self._build(int(state["n_in"]), int(state["n_classes"]))
        self.calibration = dict(state.get("calibration", {}))

    def fit(self, z: torch.Tensor, y: torch.Tensor, features: Sequence[str], *, seed: int = 0, progress: bool = True,
            **kwargs: Any) -> "LabelDecoder":
        """Train on ``z`` [n, d] with labels ``y`` ([n] ids or [n, classes] scores) named by ``features``."""
        from ...train import TrainingLoop

        c = self.config
        classes = list(features)
        if y.ndim == 2:
            if y.shape[1] != len(classes):
                raise ValueError(f"y has {y.shape[1]} columns but {len(classes)} class names were given.")
            y = y.argmax(1)
        y = y.long()
        if z.ndim != 2 or y.shape[0] != z.shape[0]:
            raise ValueError(f"fit expects z [n, d] and one label per row; got z {tuple(z.shape)}, y {tuple(y.shape)}.")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= len(classes)):
            raise ValueError(f"label ids must lie in [0, {len(classes)}); got [{int(y.min())}, {int(y.max())}].")
        if not torch.isfinite(z).all():
            raise ValueError("z has NaN or infinite values; clean the data first.")
        device = z.device if c["device"] is None else resolve_device(c["device"])
        z, y = z.to(device=device, dtype=torch.float32), y.to(device)
        split = torch.Generator().manual_seed(seed)
        train_rows, held_rows = (r.to(device) for r in _calibration_split(y.cpu(), c["calibration_fraction"], split))
        self._build(z.shape[1], len(classes), seed)
        self.to(device)
        self.standardize.fit(z[train_rows])
        optimizer = torch.optim.AdamW(self.net.parameters(), lr=c["lr"], weight_decay=c["weight_decay"])

        def step(rows: torch.Tensor) -> dict[str, torch.Tensor]:
            picked = train_rows[rows]
            loss = nn.functional.cross_entropy(self.net(self.standardize(z[picked])), y[picked])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return {"ce": loss.detach()}

        steps_per_epoch = max(1, -(-train_rows.numel() // c["batch_size"]))
        epochs = max(c["max_epochs"], -(-c["min_steps"] // steps_per_epoch))   # small data: enough steps to converge
        loop = TrainingLoop(max_epochs=epochs, batch_size=c["batch_size"], seed=seed, progress=progress,
                            desc="label-decoder")
        with seeded(seed):
            self.training_history = loop.run(train_rows.numel(), step, device=device, modules={"net": self.net}).record()
        self.net.eval()
        self.calibration = {"n_train": int(train_rows.numel()), "n_held_out": int(held_rows.numel())}
        if held_rows.numel():
            with torch.no_grad():
                logits = self.net(self.standardize(z[held_rows])).cpu()
            temperature = fit_temperature(logits, y[held_rows].cpu())
            self.log_temperature = torch.tensor(temperature, device=device).log()
            labels = y[held_rows].cpu()
            self.calibration.update({
                "temperature": round(temperature, 4),
                "held_out_accuracy": round(float((logits.argmax(1) == labels).float().mean()), 4),
                "ece_before": round(expected_calibration_error(torch.softmax(logits, 1), labels), 4),
                "ece_after": round(expected_calibration_error(torch.softmax(logits / temperature, 1), labels), 4)})
        self.features = classes
        self.is_fitted = True
        return self.eval()

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Calibrated logits [n, classes] (``softmax`` of them: calibrated class probabilities)."""
        self._check_fitted()
        logits = apply_head(self.net, self.standardize, z, n_in=self.n_latent_in, what="LabelDecoder",
                            device=self.device)
        return logits / self.log_temperature.exp().to(logits.device)

    def predict_proba(self, z: torch.Tensor) -> torch.Tensor:
        """Calibrated class probabilities [n, classes]."""
        return torch.softmax(self.decode(z), dim=1)

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        """The most probable class id of each row [n]."""
        return self.decode(z).argmax(1)
