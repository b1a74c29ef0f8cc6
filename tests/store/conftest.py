"""Fixtures of the store tests: a small counts dataset on disk and a pipeline fitted on it."""

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import virtualcell as vc
from virtualcell.datasets import simulate_perturbation


@pytest.fixture(scope="package")
def atlas(tmp_path_factory):
    """(folder, AnnData of raw counts, fitted pca pipeline with log1p preprocessing), files atlas.h5ad / atlas.zarr
    and again.h5ad / again.zarr (the same cells renamed)."""
    folder = tmp_path_factory.mktemp("atlas")
    adata = simulate_perturbation(n_cells_per_group=25, n_genes=50, n_cell_types=2, counts=True, seed=0)
    adata.X = sp.csr_matrix(adata.X)
    adata.obs["batch"] = pd.array(np.where(np.arange(adata.n_obs) % 7 == 0, None, np.arange(adata.n_obs) % 3),
                                  dtype="Int64")
    pipeline = vc.PerturbationPipeline(encoder={"name": "pca", "n_components": 6}, manipulator="mean-shift",
                                       preprocess="log1p")
    pipeline.fit(adata, context_key="cell_type")
    again = adata.copy()  # the same cells under other names (again.*): appending the same names twice is refused
    again.obs_names = "again-" + again.obs_names
    for data, name in ((adata, "atlas"), (again, "again")):
        data.write_h5ad(folder / f"{name}.h5ad")
        with warnings.catch_warnings(), ad.settings.override(zarr_write_format=3):
            warnings.simplefilter("ignore", UserWarning)  # anndata's notice about zarr v3 sharding defaults
            data.write_zarr(folder / f"{name}.zarr")
    return folder, adata, pipeline
