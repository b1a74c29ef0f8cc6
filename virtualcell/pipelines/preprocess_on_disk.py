"""A preprocessing recipe on a store on disk: its genes by a streamed pass, and a preprocessed copy written in chunks.

:func:`recipe_genes` chooses a recipe's genes (scanpy's Seurat HVGs from streamed per-gene moments of the
normalised counts: the same genes as in memory) in one sequential pass. :func:`write_preprocessed` applies
the recipe (``normalize_total``, ``log1p``, the genes) to every cell in chunks and writes the result as a
CSR ``.h5ad`` (anndata's on-disk format), never holding more than one chunk: what ``benchmark`` and
``select`` from disk run on when given a recipe (their loop compares cells in the log-normalised space).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..data.preprocess import Preprocessing
from ..data.streaming import StreamingMoments, batch_recipe, hvg_seurat
from ..errors import DataError
from ..execution import progress_bar
from ..train.disk_cells import DiskCells
from ..train.disk_loader import DiskRows

__all__ = ["recipe_genes", "write_preprocessed", "PASS_ROWS"]

#: rows per read of a streamed pass
PASS_ROWS = 8192


def recipe_genes(prep: Preprocessing, rows: DiskRows, var_names: Sequence[str]) -> list[str]:
    """The genes ``prep`` keeps on the on-disk rows: all, or its ``n_top_genes`` Seurat HVGs (one streamed pass)."""
    var_names = [str(v) for v in var_names]
    if not prep.n_top_genes or prep.n_top_genes >= len(var_names):
        return var_names
    if prep.hvg_flavor != "seurat":
        raise DataError(f"From disk, HVGs are computed with flavor='seurat' only; got {prep.hvg_flavor!r}.")
    moments = StreamingMoments()   # of expm1(log-normalised) = the normalised counts, as scanpy's seurat flavour
    normalised = batch_recipe(prep, var_names, var_names, log_space=False, dense=False)   # CSR stays CSR
    for _, raw in rows.raw_chunks(PASS_ROWS):
        moments.update(normalised(raw))
    return hvg_seurat(moments.mean, moments.var, var_names, prep.n_top_genes)


def write_preprocessed(cells: DiskCells, preprocess: Any, path: str | os.PathLike[str], *,
                       progress: bool = True) -> tuple[Path, Preprocessing]:
    """Write ``cells`` with the recipe ``preprocess`` applied to ``path`` (CSR float32 ``.h5ad``, ``obs`` as held,
    ``var`` = the recipe's genes), one chunk of :data:`PASS_ROWS` cells at a time; returns the path and the
    fitted recipe. Written to a temporary name beside ``path`` and renamed when complete."""
    import anndata as ad
    import h5py
    import pandas as pd

    prep = Preprocessing.from_spec(preprocess)
    rows = cells.reader()
    prep.genes = recipe_genes(prep, rows, cells.var_names)
    transform = batch_recipe(prep, [str(v) for v in cells.var_names], prep.genes, dense=False)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    obs = cells.obs.set_axis(cells.obs.index.astype(str))
    ad.AnnData(obs=obs, var=pd.DataFrame(index=pd.Index(prep.genes, dtype=str))).write_h5ad(tmp)
    try:
        with h5py.File(tmp, "a") as f:
            if "X" in f:
                del f["X"]
            group = f.create_group("X")
            group.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0",
                                "shape": (cells.n_obs, len(prep.genes))})
            data = group.create_dataset("data", (0,), np.float32, maxshape=(None,), chunks=(1 << 16,))
            indices = group.create_dataset("indices", (0,), np.int32, maxshape=(None,), chunks=(1 << 16,))
            indptr = group.create_dataset("indptr", (cells.n_obs + 1,), np.int64)
            indptr[0] = 0
            chunks = progress_bar(rows.raw_chunks(PASS_ROWS), total=-(-cells.n_obs // PASS_ROWS), desc="preprocess",
                                  enabled=progress)
            for index, raw in chunks:
                block = sp.csr_matrix(transform(raw))
                start = data.shape[0]
                data.resize((start + block.nnz,))
                indices.resize((start + block.nnz,))
                data[start:] = block.data
                indices[start:] = block.indices
                indptr[index[0] + 1:index[-1] + 2] = block.indptr[1:] + start
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path, prep
