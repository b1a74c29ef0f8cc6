"""Value checks at the AnnData edge: NaN, negatives, and counts where log data is expected."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["DataError", "looks_like_counts", "check_expression"]


class DataError(ValueError):
    """Input data that cannot be used as given; the message says how to fix it."""


def _values(x) -> np.ndarray:
    return x.data if sp.issparse(x) else np.asarray(x).ravel()


def looks_like_counts(x, *, sample: int = 200_000) -> bool:
    """True when ``x`` holds non-negative integers with a large maximum (raw UMI counts)."""
    values = _values(x)
    if values.size == 0:
        return False
    if values.size > sample:
        values = values[np.random.default_rng(0).choice(values.size, sample, replace=False)]
    return bool(np.all(values >= 0) and np.allclose(values, np.round(values)) and values.max() > 20)


def check_expression(x, *, expect: str = "log", what: str = "X") -> None:
    """Raise ``DataError`` on NaN/inf, negatives, or a scale that contradicts ``expect``.

    Args:
        x: [n, genes] dense or sparse matrix.
        expect: ``"log"`` (log-normalised, e.g. ``log1p(normalize_total)``), ``"counts"`` or ``"any"``.
    """
    values = _values(x)
    if values.size and not np.all(np.isfinite(values)):
        n_bad = int((~np.isfinite(values)).sum())
        raise DataError(f"{what} contains {n_bad} NaN or infinite values; remove or impute them first.")
    if values.size and values.min() < 0:
        raise DataError(f"{what} contains negative values (min {values.min():.3g}); expression must be >= 0. "
                        "Was the data scaled (sc.pp.scale)? Pass unscaled log-normalised expression.")
    if expect == "log" and looks_like_counts(x):
        raise DataError(f"{what} looks like raw counts (integers up to {values.max():.0f}) but log-normalised "
                        "data is expected. Preprocess with preprocess='log1p' (normalize_total + log1p), or "
                        "run sc.pp.normalize_total and sc.pp.log1p yourself.")
    if expect == "counts" and values.size and not np.allclose(values, np.round(values)):
        raise DataError(f"{what} holds non-integer values but raw counts are expected; pass the counts layer "
                        "(layer='counts') or preprocess=None for data that is already log-normalised.")
