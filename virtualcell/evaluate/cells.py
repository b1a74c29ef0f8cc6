"""The cells of a benchmark run: preprocessed once, cut into what a method may see, predictions aligned."""

from __future__ import annotations

from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from ..data.preprocess import Preprocessing

__all__ = ["prepare_cells", "subset_cells", "aligned_cells"]


def prepare_cells(adata: ad.AnnData, preprocess: Any) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """Preprocess every cell once: dense log-normalised ``x`` [n, genes], the gene names and the recipe's dict."""
    recipe = Preprocessing.from_spec(preprocess).fit(adata)
    x = recipe.transform(adata)
    return x, list(recipe.genes), recipe.to_dict()


def subset_cells(x: np.ndarray, obs: pd.DataFrame, genes: list[str], mask: np.ndarray, columns: list[str]) -> ad.AnnData:
    """An AnnData of the ``mask`` cells holding only ``columns`` of ``obs`` (what a method may see)."""
    sub_obs = obs.loc[mask, columns].copy()
    for column in columns:
        sub_obs[column] = sub_obs[column].astype(str).astype("category")
    return ad.AnnData(X=x[mask], obs=sub_obs, var=pd.DataFrame(index=pd.Index(genes, dtype=str)))


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
