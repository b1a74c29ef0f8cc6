"""The expression of on-disk cells as the held-out loop reads it, never densified whole.

``benchmark`` and ``select`` from disk hand the loop (:mod:`.holdout`) a :class:`DiskMatrix` where they
would hand a dense ``x`` [n, genes]: the loop reads a unit's few cells (``x[mask]``: its perturbed and
control cells), fits the distribution metrics' PCA on the reference cells in one streamed pass
(:meth:`DiskMatrix.pca_space`: the in-memory loop's seeded randomised SVD, computed from the streamed
covariance: :mod:`virtualcell.metrics.pca_from_covariance`), and the methods
are fitted from disk on :meth:`DiskMatrix.cells` (a :class:`~virtualcell.train.disk_cells.DiskCells`).
The stored ``X`` is taken as it is (already log-normalised: the loop's ``preprocess=None``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..data.preprocess import Preprocessing
from ..data.streaming import StreamingPCA
from ..errors import DataError
from ..metrics.distribution import PCASpace
from ..metrics.pca_from_covariance import pca_space_from_covariance
from ..train.disk_cells import DiskCells
from .preprocess_on_disk import write_preprocessed

__all__ = ["DiskMatrix", "disk_cells_for", "PASS_ROWS"]

#: rows per read of a streamed pass (at most), and values per chunk (rows x genes)
PASS_ROWS, PASS_VALUES = 8192, 8_388_608
#: genes of the largest PCA from disk (its covariance is 8 x genes^2 bytes: 2 GB at 16,384)
MAX_PCA_GENES = 16_384


class DiskMatrix:
    """``x`` [n_cells, genes] of :class:`DiskCells` for the held-out loop (module doc)."""

    def __init__(self, cells: DiskCells) -> None:
        self.disk_cells = cells
        self.shape = cells.shape
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def _positions(self, mask: np.ndarray) -> np.ndarray:
        mask = np.asarray(mask)
        return np.flatnonzero(mask) if mask.dtype == bool else np.sort(mask.astype(np.int64))

    def __getitem__(self, mask: np.ndarray) -> np.ndarray:
        """The cells of a boolean mask [n] (or sorted positions), dense float32 [m, genes]: read for a few cells."""
        raw = self.disk_cells.read(self._positions(mask))
        return np.asarray(raw.toarray() if sp.issparse(raw) else raw, dtype=np.float32)

    def cells(self, mask: np.ndarray) -> DiskCells:
        """The cells of ``mask`` on disk (nothing read), for a fit."""
        return self.disk_cells[mask]

    def pca_space(self, mask: np.ndarray, n_pcs: int, seed: int = 0, *, float64: bool = False) -> PCASpace:
        """The ``mask`` cells' PCA space as :func:`~virtualcell.metrics.distribution.fit_pca_space` fits it on them
        in memory (its seeded randomised SVD; ``float64``: on float64 cells), from the covariance [genes, genes]
        of one streamed pass (at most :data:`MAX_PCA_GENES` genes)."""
        genes = self.shape[1]
        if genes > MAX_PCA_GENES:
            raise DataError(f"The distribution metrics' PCA from disk holds a {genes} x {genes} covariance; at most "
                            f"{MAX_PCA_GENES} genes are supported. Select HVGs first (--preprocess kang-full, or a "
                            "recipe with n_top_genes).")
        positions = self._positions(mask)
        if positions.size < 2:
            raise ValueError(f"The PCA reference must have >= 2 cells; got {positions.size}.")
        moments = StreamingPCA(genes)
        step = min(PASS_ROWS, max(64, PASS_VALUES // genes))      # a float64 chunk of <= 64 MB
        for begin in range(0, positions.size, step):
            moments.update(self[positions[begin:begin + step]])
        return pca_space_from_covariance(moments.mean, moments.comoment, moments.n, n_pcs, seed, float32=not float64)

    def __repr__(self) -> str:
        return f"DiskMatrix({self.shape[0]} cells x {self.shape[1]} genes of {self.disk_cells.source!s})"


def disk_cells_for(source: Any, *, preprocess: Any, layer: str | None = None, workdir: str | None = None,
                   progress: bool = True) -> tuple[DiskCells, Preprocessing]:
    """``source`` (a store path, shards, a backed AnnData or ``DiskCells``) as the :class:`DiskCells` a held-out
    loop runs on, in the log-normalised space, and the recipe fitted on it (its genes).

    ``preprocess`` None: the stored ``X`` as it is (it must be log-normalised). A recipe: applied once to every
    cell in a streamed pass and written as a CSR copy into a temporary folder in ``workdir`` (default: the
    system's), deleted when the returned cells (and every selection of them) are gone.
    """
    cells = source if isinstance(source, DiskCells) else DiskCells.open(source, layer=layer)
    if preprocess is None:
        recipe = Preprocessing.from_spec(None)
        recipe.genes = [str(g) for g in cells.var_names]
        return cells, recipe
    folder = tempfile.TemporaryDirectory(prefix="virtualcell-preprocessed-", dir=workdir)
    path, recipe = write_preprocessed(cells, preprocess, Path(folder.name) / "cells.h5ad", progress=progress)
    return DiskCells.open(path, owner=folder), recipe
