"""One comparison of a filter, done by the column's type (a categorical by the type of its categories).

A column is one of four kinds: ``bool``, ``number``, ``datetime`` or ``text``. A literal is converted
to the column's kind before comparing, so ``leiden == 1``, ``leiden == "1"`` and ``leiden in [0, 1]``
agree on integer categories, ``flag == "True"`` works on a boolean column, and ``cell_type == 5`` on a
text column compares with ``"5"``. A literal that has no meaning for the kind (``dose == "high"``) is
refused with a message saying what to compare with; ``<``, ``<=``, ``>``, ``>=`` need numbers or dates.
Missing values never match a comparison (``== null`` matches them).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["column_kind", "compare", "ComparisonError"]

_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


class ComparisonError(ValueError):
    """A literal that cannot be compared with a column (the message says what can)."""


def column_kind(series: pd.Series) -> str:
    """``"bool"``, ``"number"``, ``"datetime"`` or ``"text"`` (a categorical: the kind of its categories)."""
    dtype = series.cat.categories.dtype if isinstance(series.dtype, pd.CategoricalDtype) else series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_numeric_dtype(dtype):
        return "number"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    return "text"


def _plain(series: pd.Series, kind: str) -> pd.Series:
    """``series`` as a nullable array of its kind (categoricals decoded)."""
    if kind == "bool":
        return series.astype("boolean")
    if kind == "number":
        categories = series.cat.categories if isinstance(series.dtype, pd.CategoricalDtype) else None
        if categories is not None:
            return series.astype("Int64" if pd.api.types.is_integer_dtype(categories.dtype) else "Float64")
        return series
    if kind == "datetime":
        return series.astype(series.cat.categories.dtype) if isinstance(series.dtype, pd.CategoricalDtype) else series
    return series.astype(object).where(series.notna(), None)


def _coerce(value: Any, kind: str, column: str, dtype: Any) -> Any:
    """``value`` as the column's kind, or ``ComparisonError`` saying what the column holds."""
    if value is None:
        return None
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ComparisonError(f"column {column!r} holds true/false ({dtype}); compare it with true or false")
    if kind == "number":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        try:
            number = float(value) if isinstance(value, str) else None
        except ValueError:
            number = None
        if number is None or not np.isfinite(number):
            raise ComparisonError(f"column {column!r} holds numbers ({dtype}); compare it with a number")
        return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number
    if kind == "datetime":
        return pd.Timestamp(value)
    return str(value)


def compare(series: pd.Series, op: str, value: Any, column: str) -> np.ndarray:
    """Boolean mask [n] of ``series <op> value`` (``value`` a list for ``in`` / ``not in``)."""
    kind = column_kind(series)
    if op in ("<", "<=", ">", ">=") and kind not in ("number", "datetime"):
        raise ComparisonError(f"column {column!r} holds {series.dtype}, which has no order; use == or in")
    values = [_coerce(v, kind, column, series.dtype) for v in (value if op in ("in", "not in") else [value])]
    series = _plain(series, kind)
    present = series.notna().to_numpy()
    if op in ("in", "not in"):
        mask = series.isin([v for v in values if v is not None]).to_numpy(dtype=bool, na_value=False) & present
        if None in values:
            mask |= ~present
        return ~mask if op == "not in" else mask
    value = values[0]
    if value is None:
        return ~present if op == "==" else present
    result = {"==": series == value, "!=": series != value, "<": series < value, "<=": series <= value,
              ">": series > value, ">=": series >= value}[op]
    return pd.Series(result).fillna(False).to_numpy(dtype=bool) & present
