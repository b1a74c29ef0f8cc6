"""The cells a method of the held-out loop sees: a mask of the loop's ``x``, with only the obs columns it may use.

One function for the benchmark (:mod:`virtualcell.evaluate.benchmark_run`) and the inner CV of
``select`` (:class:`virtualcell.selection.cv.CVData`). In memory it is an AnnData; from disk (``x`` a
:class:`~.disk_matrix.DiskMatrix`) a fit gets the :class:`~virtualcell.train.disk_cells.DiskCells` of the
mask (the pipeline reads them itself, in batches) and a prediction the cells read into memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from .disk_matrix import DiskMatrix

__all__ = ["method_cells"]


def method_cells(x: np.ndarray | DiskMatrix, obs: pd.DataFrame, genes: Sequence[str], mask: np.ndarray,
                 columns: Sequence[str], *, for_fit: bool = False) -> Any:
    """The ``mask`` [n] cells of ``x`` [n, genes] holding ``columns`` of ``obs`` (as string categories): an
    AnnData, or with ``for_fit`` and ``x`` on disk, a :class:`~virtualcell.train.disk_cells.DiskCells`."""
    sub_obs = obs.loc[mask, list(columns)].copy()
    for column in columns:
        sub_obs[column] = sub_obs[column].astype(str).astype("category")
    if isinstance(x, DiskMatrix):
        if for_fit:
            return x.cells(mask).with_obs(sub_obs)
        sub_obs.index = sub_obs.index.astype(str)      # positional on disk: AnnData wants names
    return ad.AnnData(X=x[mask], obs=sub_obs, var=pd.DataFrame(index=pd.Index(list(genes), dtype=str)))
