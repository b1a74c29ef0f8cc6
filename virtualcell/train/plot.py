"""Plot a training history (``history.json`` of a saved component) to a PNG: one panel per loss."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..io import atomic_write

__all__ = ["plot_history", "read_history"]


def read_history(source: str | os.PathLike[str] | Mapping[str, Any] | Any) -> dict[str, Any]:
    """A history record from an artifact folder, a ``history.json`` file, a fitted component or a dict."""
    if isinstance(source, Mapping):
        return dict(source)
    if hasattr(source, "training_history"):            # a fitted component
        if not source.training_history:
            raise ValueError(f"{type(source).__name__} has no training history: it was fitted in one pass "
                             "(no epochs) or loaded from an artifact saved before histories were kept.")
        return dict(source.training_history)
    path = Path(source)
    file = path / "history.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{path} has no history.json: the component was fitted in one pass (no epochs) or "
                                "saved before histories were kept. Re-fit it to record one.")
    record = json.loads(file.read_text(encoding="utf-8"))
    if not isinstance(record, dict) or not isinstance(record.get("epochs"), list):
        raise ValueError(f"{file} is not a training history (a JSON object with a list 'epochs').")
    return record


def plot_history(source: str | os.PathLike[str] | Mapping[str, Any] | Any, out: str | os.PathLike[str], *,
                 title: str | None = None) -> Path:
    """Plot every loss of ``source`` (see :func:`read_history`) against the epoch into the PNG ``out``.

    Training and validation losses of one name (``loss`` and ``val_loss``) share a panel; the epoch
    whose weights were saved is marked. Written atomically; returns ``out``.
    """
    from matplotlib.figure import Figure   # no pyplot: no GUI backend, nothing left open

    record = read_history(source)
    epochs = [e for e in record["epochs"] if isinstance(e, Mapping)]
    keys = [k for k in dict.fromkeys(k for e in epochs for k in e) if k != "epoch"]
    if not keys:
        raise ValueError("The training history holds no losses to plot.")
    panels = list(dict.fromkeys(k[4:] if k.startswith("val_") and k[4:] in keys else k for k in keys))
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(4 * columns, 3 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    unit = record.get("unit", "epoch")
    kept = record.get("weights_epoch")
    for axis, name in zip(axes.flat, panels):
        for key, style in ((name, "-"), (f"val_{name}", "--")):
            points = [(e.get("epoch", i), e[key]) for i, e in enumerate(epochs) if isinstance(e.get(key), (int, float))]
            if points:
                axis.plot(*zip(*points), style, label=key)
        if isinstance(kept, int) and kept >= 0:
            axis.axvline(kept, color="grey", linewidth=0.8, linestyle=":", label=f"saved ({record.get('weights')})")
        axis.set_xlabel(unit)
        axis.set_title(name)
        axis.legend(fontsize=7)
    for axis in list(axes.flat)[len(panels):]:
        axis.set_visible(False)
    figure.suptitle(title or f"training history ({record.get('n_epochs', len(epochs))} {unit}s)")
    figure.tight_layout()
    return atomic_write(out, lambda tmp: figure.savefig(tmp, dpi=100, format="png"))
