"""Saying why a filter matched no cell: the values its columns hold."""

from __future__ import annotations

import pandas as pd

from .filter import parse_filter

__all__ = ["no_match", "column_values"]

MAX_LISTED = 20


def column_values(series: pd.Series) -> str:
    """A short account of what ``series`` holds: its (first 20) values, or its range for many numbers."""
    present = series.dropna()
    if present.empty:
        return "only missing values"
    values = pd.unique(present.astype(object)) if not isinstance(series.dtype, pd.CategoricalDtype) else \
        [c for c in series.cat.categories if (present == c).any()]
    numeric = pd.api.types.is_numeric_dtype(present.dtype) and not pd.api.types.is_bool_dtype(present.dtype)
    if numeric and len(values) > MAX_LISTED:
        return f"numbers from {present.min()} to {present.max()}"
    shown = ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in sorted(values, key=str)[:MAX_LISTED])
    return shown + (f", ... ({len(values)} values)" if len(values) > MAX_LISTED else "")


def no_match(where: str, obs: pd.DataFrame, key: str, *, what: str | None = None) -> str:
    """The message for a filter ``where`` that matches no cell of ``key`` (``obs``: at least its columns).

    ``what`` names the filter in the message (default: ``the filter '<where>'``).
    """
    columns = sorted(parse_filter(where).columns())
    held = "; ".join(f"{column!r} holds {column_values(obs[column])}" for column in columns)
    return (f"No stored cell of {key!r} matches {what or f'the filter {where!r}'} ({held}); check the values' "
            "spelling and type.")
