"""The cells of a benchmark run: preprocessed once, cut into what a method may see, predictions aligned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from ..data.preprocess import Preprocessing
from ..pipelines.disk_matrix import DiskMatrix, disk_cells_for
from ..pipelines.method_cells import method_cells as subset_cells
from ..train.disk_shards import shard_paths

__all__ = ["prepare_cells", "disk_cells", "subset_cells", "aligned_cells"]


def prepare_cells(adata: ad.AnnData, preprocess: Any) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """Preprocess every cell once: dense log-normalised ``x`` [n, genes], the gene names and the recipe's dict."""
    recipe = Preprocessing.from_spec(preprocess).fit(adata)
    x = recipe.transform(adata)
    return x, list(recipe.genes), recipe.to_dict()


def disk_cells(data: Any, preprocess: Any, workdir: Path | None = None, progress: bool = True
               ) -> tuple[DiskMatrix, pd.DataFrame, list[str], dict[str, Any], dict[str, Any]]:
    """A benchmark's cells on disk (``data``: a store, a folder or list of shards): the :class:`DiskMatrix` (with a
    recipe: of a preprocessed copy written in ``workdir``, :func:`~virtualcell.pipelines.disk_matrix.disk_cells_for`),
    every ``obs`` column (by position), the genes, the recipe's dict and the dataset record."""
    from ..registry.hashing import sha256_file

    cells, recipe = disk_cells_for(data, preprocess=preprocess, workdir=workdir, progress=progress)
    paths = [Path(p) for p in shard_paths(data)]
    single = paths[0] if len(paths) == 1 and paths[0].is_file() else None
    dataset = {"path": str(paths[0].resolve()) if len(paths) == 1 else [str(p.resolve()) for p in paths],
               "sha256": sha256_file(single) if single is not None else None, "from_disk": True}
    return DiskMatrix(cells), cells.obs, list(recipe.genes), recipe.to_dict(), dataset


def aligned_cells(predicted: ad.AnnData, genes: list[str]) -> np.ndarray:
    """The predicted cells [n, len(genes)] (float64) in ``genes`` order; ValueError if the decoder lacks some."""
    names = list(map(str, predicted.var_names))
    if names == genes:
        return np.asarray(predicted.X, dtype=np.float64)
    missing = sorted(set(genes) - set(names))
    if missing:
        raise ValueError(f"The method's decoder does not output genes {missing[:10]}; its output_features must "
                         "cover the benchmark's genes.")
    return np.asarray(predicted[:, genes].X, dtype=np.float64)
