"""Summaries of a benchmark report: each metric's mean and median over the held-out units."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["unit_means", "summarise"]


def unit_means(per_unit: Mapping[str, Mapping[str, Any]], reduce: Callable[[np.ndarray], Any] = np.mean) -> dict[str, Any]:
    """``reduce`` (mean, or median) of every numeric metric over the units, NaN and None left out."""
    keys = [k for k, v in next(iter(per_unit.values())).items() if isinstance(v, (int, float)) and not k.startswith("n_")]
    means: dict[str, Any] = {"n_contexts": len(per_unit)}
    for key in keys:
        values = np.array([m[key] for m in per_unit.values() if m.get(key) is not None], dtype=float)
        values = values[np.isfinite(values)]
        means[key] = float(reduce(values)) if values.size else None
    return means


def summarise(report: dict[str, Any]) -> None:
    """Fill ``means`` and ``medians`` over the units (a ratio whose denominator is noise can dominate a mean)."""
    report["means"] = {label: unit_means(per) for label, per in report["results"].items() if per}
    report["medians"] = {label: unit_means(per, np.median) for label, per in report["results"].items() if per}
