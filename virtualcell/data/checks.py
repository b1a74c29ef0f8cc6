"""Value checks at the AnnData edge: NaN/inf, absurd magnitudes, negatives, and counts where log data is expected.

Every refusal names the first offending cell and gene (when the caller passes ``obs_names`` and
``var_names``) and says how to fix the data.

The magnitude bound, :data:`MAX_EXPRESSION` = 2**24 (16,777,216), is float32's: every model computes in
float32, which represents integers exactly only up to 2**24 and whose spacing exceeds 1 above it.
No real measurement comes near it (a whole cell holds ~1e3-1e5 molecules, so one gene's count is far
below; log-normalised expression is < 30, the log1p of 1e13), so a larger value is a corrupted entry or
a unit error. Left in, one such value swamps every float32 sum over cells (a single 1e30 at fit zeroed
a gene's predictions), and a float64 value above float32's range (3.4e38) becomes inf, then NaN.

Data expected to be log-normalised must also stay below :data:`MAX_LOG_EXPRESSION` = 30: the
natural log of 1e13 (log2 of 1e9), far above any log1p of normalised counts (about 9 for
``normalize_total`` to 1e4, 14 for counts per million). A larger value (a 1e6 among log values) is a
corrupted entry or data that was never logged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp

from ..errors import DataError

__all__ = ["DataError", "MAX_EXPRESSION", "MAX_LOG_EXPRESSION", "looks_like_counts", "check_expression"]

#: the largest expression value accepted (float32's exact-integer limit; see the module docstring)
MAX_EXPRESSION = float(2**24)
#: the largest value accepted in log-normalised data (see the module docstring)
MAX_LOG_EXPRESSION = 30.0


def _values(x) -> np.ndarray:
    return x.data if sp.issparse(x) else np.asarray(x).ravel()


def _sample(values: np.ndarray, sample: int) -> np.ndarray:
    if values.size > sample:
        values = values[np.random.default_rng(0).choice(values.size, sample, replace=False)]
    return values


def looks_like_counts(x, *, sample: int = 200_000) -> bool:
    """True when ``x`` looks like raw counts, whatever its maximum.

    Counts: every non-zero value (of a seeded sample of ``sample`` values) is a non-negative integer,
    with at least two distinct non-zero values (a 0/1 matrix is ambiguous and passes as not counts).
    Log-normalised data fails the integer test: ``log1p`` of normalised counts is non-integer in
    every non-zero entry. Poisson counts with small means (max <= 20) are counts too.
    """
    values = _sample(_values(x), sample)
    values = values[values != 0]          # zeros say nothing about integer-ness
    if values.size == 0 or not np.all(np.isfinite(values)) or values.min() < 0:
        return False
    if not np.all(np.abs(values - np.round(values)) <= 1e-6 * np.maximum(1.0, np.abs(values))):
        return False
    return bool(values.max() > values.min())


def _first(x, bad: Callable[[np.ndarray], np.ndarray]) -> tuple[int, int, float, int]:
    """(row, column, value, count) of the entries of ``x`` where ``bad(values)`` holds (first in row order)."""
    if sp.issparse(x):
        coo = sp.coo_matrix(x)
        mask = bad(coo.data)
        rows, cols, data = coo.row[mask], coo.col[mask], coo.data[mask]
        first = int(np.lexsort((cols, rows))[0])
        return int(rows[first]), int(cols[first]), float(data[first]), int(mask.sum())
    array = np.asarray(x)
    array = array.reshape(1, -1) if array.ndim == 1 else array
    mask = bad(array)
    row, col = np.argwhere(mask)[0]
    return int(row), int(col), float(array[row, col]), int(mask.sum())


def _where(x, bad, obs_names: Sequence | None, var_names: Sequence | None) -> tuple[int, str]:
    """(count, "the first 1e+30 in cell 'c7' (row 7), gene 'CD4' (column 2)") of the entries where ``bad`` holds."""
    row, col, value, count = _first(x, bad)
    cell = f"cell {str(obs_names[row])!r} (row {row})" if obs_names is not None else f"row {row}"
    gene = f"gene {str(var_names[col])!r} (column {col})" if var_names is not None else f"column {col}"
    return count, f"the first {value:.6g} in {cell}, {gene}"


def check_expression(x, *, expect: str = "log", what: str = "X", obs_names: Sequence | None = None,
                     var_names: Sequence | None = None) -> None:
    """Raise ``DataError`` on NaN/inf, values above :data:`MAX_EXPRESSION`, negatives, or a scale that
    contradicts ``expect`` (counts, or values above :data:`MAX_LOG_EXPRESSION`, where log data is expected);
    the message names the first offending cell and gene.

    Args:
        x: [n, genes] dense or sparse matrix.
        expect: ``"log"`` (log-normalised, e.g. ``log1p(normalize_total)``), ``"counts"`` or ``"any"``.
        what: how to call ``x`` in messages (``"adata.X"``).
        obs_names, var_names: cell [n] and gene [genes] names, for the messages.
    """
    values = _values(x)
    if values.size == 0:
        return
    if not np.all(np.isfinite(values)):
        count, where = _where(x, lambda v: ~np.isfinite(v), obs_names, var_names)
        raise DataError(f"{what} contains {count} NaN or infinite values ({where}); remove those cells or impute "
                        "the values first.")
    if values.max() > MAX_EXPRESSION:
        count, where = _where(x, lambda v: v > MAX_EXPRESSION, obs_names, var_names)
        raise DataError(f"{what} holds {count} values above {MAX_EXPRESSION:.0f} (2**24, float32's exact-integer "
                        f"limit; no count or log expression is that large), {where}. The entry is corrupted or in "
                        "the wrong units; fix or remove those cells.")
    if values.min() < 0:
        count, where = _where(x, lambda v: v < 0, obs_names, var_names)
        raise DataError(f"{what} contains {count} negative values ({where}); expression must be >= 0. "
                        "Was the data scaled (sc.pp.scale)? Pass unscaled log-normalised expression.")
    if expect == "log" and looks_like_counts(x):
        raise DataError(f"{what} looks like raw counts (non-negative integers up to {values.max():.0f}) but "
                        "log-normalised data is expected. Preprocess with preprocess='log1p' (normalize_total + "
                        "log1p), or run sc.pp.normalize_total and sc.pp.log1p yourself.")
    if expect == "log" and values.max() > MAX_LOG_EXPRESSION:
        count, where = _where(x, lambda v: v > MAX_LOG_EXPRESSION, obs_names, var_names)
        raise DataError(f"{what} should be log-normalised but holds {count} values above {MAX_LOG_EXPRESSION:g} (log "
                        f"expression stays below ~15), {where}. The entry is corrupted, or the data were never "
                        "logged: fix or remove those cells, or run sc.pp.log1p (preprocess='log1p' for raw counts).")
    if expect == "counts" and not np.allclose(values, np.round(values)):
        raise DataError(f"{what} holds non-integer values but raw counts are expected; pass the counts layer "
                        "(layer='counts') or preprocess=None for data that is already log-normalised.")
