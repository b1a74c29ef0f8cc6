"""Cells of AnnData stores on disk, never read whole: a selection of rows with their annotations.

A :class:`DiskCells` is what ``PerturbationPipeline.fit``, ``benchmark`` and ``select`` take from disk:
the stores (a path, a list of shards or a folder of them), the file rows it covers (all, or a subset:
e.g. the training cells of a held-out split) and those rows' ``obs`` (the columns asked for, indexed
by position, without cell names: :mod:`.disk_annotations`). Indexing it with a boolean mask or row
positions gives another :class:`DiskCells` without reading anything; :meth:`DiskCells.read` reads
the expression of a few rows (a held-out unit's cells) and :meth:`DiskCells.to_memory` makes an
in-memory AnnData of a small selection.

>>> cells = DiskCells.open("atlas.h5ad", ["condition", "cell_type"])         # doctest: +SKIP
>>> train = cells[cells.obs["cell_type"].to_numpy() != "B"]                  # doctest: +SKIP
>>> pipe.fit(train, context_key="cell_type")                                  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .disk_annotations import Annotations, read_annotations
from .disk_loader import DiskRows, sorted_rows

__all__ = ["DiskCells"]


@dataclasses.dataclass(frozen=True)
class DiskCells:
    """The rows ``rows`` (sorted file rows; None: every row) of the stores ``source`` and their ``annotations``
    (``obs`` [len(rows), columns] by position, ``var``). ``layer``: read ``layers[layer]`` instead of ``X``."""

    source: Any
    annotations: Annotations
    rows: np.ndarray | None = None
    layer: str | None = None
    #: kept alive as long as these cells or a selection of them (e.g. the temporary folder of a preprocessed copy)
    owner: Any = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def open(cls, source: Any, columns: Sequence[str] | None = None, *, layer: str | None = None,
             names: bool = False, owner: Any = None) -> "DiskCells":
        """Every cell of ``source`` with the ``obs`` ``columns`` (all when None; with ``names``, the whole ``obs``
        indexed by cell name, as anndata reads it); reads no expression."""
        return cls(source, read_annotations(source, columns, names=names), None, layer, owner)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (e.g. for worker processes) without ``owner``: the process that made it keeps that alive."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "owner"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in {**state, "owner": None}.items():
            object.__setattr__(self, name, value)

    @property
    def obs(self) -> pd.DataFrame:
        return self.annotations.obs

    @property
    def var_names(self) -> pd.Index:
        return self.annotations.var_names

    @property
    def n_obs(self) -> int:
        return self.annotations.n_obs

    @property
    def shape(self) -> tuple[int, int]:
        return self.annotations.shape

    def __len__(self) -> int:
        return self.n_obs

    def file_rows(self) -> np.ndarray:
        """The file rows [n_obs] these cells are (int64, sorted)."""
        return np.arange(self.n_obs, dtype=np.int64) if self.rows is None else self.rows

    def __getitem__(self, selection: Any) -> "DiskCells":
        """The cells at a boolean mask [n_obs] or sorted positions (reads nothing); obs re-indexed by position."""
        positions = np.asarray(selection)
        if positions.dtype == bool:
            if positions.shape != (self.n_obs,):
                raise IndexError(f"A boolean mask of these cells needs {self.n_obs} values; got {positions.shape}.")
            positions = np.flatnonzero(positions)
        positions = sorted_rows(positions, self.n_obs, what="DiskCells takes")
        obs = self.obs.iloc[positions].reset_index(drop=True)
        head = [self.annotations.head_names[p] for p in positions[:1000] if p < len(self.annotations.head_names)]
        annotations = Annotations(obs, self.annotations.var, head)
        return dataclasses.replace(self, annotations=annotations, rows=self.file_rows()[positions])

    def with_obs(self, obs: pd.DataFrame) -> "DiskCells":
        """The same cells with another ``obs`` [n_obs, ...] (e.g. only the columns a method may see)."""
        if len(obs) != self.n_obs:
            raise ValueError(f"obs has {len(obs)} rows; these cells are {self.n_obs}.")
        annotations = Annotations(obs.reset_index(drop=True), self.annotations.var, self.annotations.head_names)
        return dataclasses.replace(self, annotations=annotations)

    def reader(self, **options: Any) -> DiskRows:
        """A :class:`DiskRows` over these cells (row ``i`` = cell ``i``); ``options`` as DiskRows takes them."""
        return DiskRows(self.source, layer=self.layer, rows=self.rows, **options)

    def read(self, positions: np.ndarray | None = None) -> Any:
        """The raw expression of the cells at ``positions`` (all when None): CSR or dense [m, genes], in that order."""
        reader = self.reader()
        return reader.read(np.arange(len(reader)) if positions is None else np.asarray(positions))

    def to_memory(self) -> Any:
        """An in-memory AnnData of these cells (``obs`` as held, ``var``, the matrix: sparse stays sparse)."""
        import anndata as ad

        matrix = self.read()
        adata = ad.AnnData(obs=self.obs.set_axis(self.obs.index.astype(str)), var=self.annotations.var)
        if self.layer is None:
            adata.X = matrix if sp.issparse(matrix) else np.asarray(matrix)
        else:
            adata.layers[self.layer] = matrix
        return adata
