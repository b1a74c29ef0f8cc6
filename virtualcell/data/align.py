"""Gene alignment by name: reorder columns to a component's feature order, or say what is missing."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .checks import DataError

__all__ = ["feature_indexer", "align_matrix"]


def feature_indexer(available: Sequence[str], required: Sequence[str], *, what: str = "the data") -> np.ndarray:
    """Column indices [len(required)] that put ``available`` names in ``required`` order.

    Missing names are an error that names them (first 20) and counts them.
    """
    index = pd.Index(available)
    if not index.is_unique:
        dupes = index[index.duplicated()].unique().tolist()
        raise DataError(f"{what} has duplicated gene names {dupes[:10]}; make them unique (adata.var_names_make_unique()).")
    positions = index.get_indexer(list(required))
    if (positions < 0).any():
        missing = [g for g, p in zip(required, positions) if p < 0]
        raise DataError(f"{len(missing)} of {len(required)} genes the model needs are missing from {what}: "
                        f"{missing[:20]}{' ...' if len(missing) > 20 else ''}. Use data measured on the same "
                        "genes (matching var_names), or refit the model on the genes you have.")
    return positions


def align_matrix(x, available: Sequence[str], required: Sequence[str], *, what: str = "the data"):
    """``x`` [n, len(available)] -> [n, len(required)] with columns in ``required`` order."""
    positions = feature_indexer(available, required, what=what)
    if np.array_equal(positions, np.arange(len(available))):
        return x
    return x[:, positions]
