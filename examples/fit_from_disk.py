"""Fit a VAE + latent arithmetic from an AnnData on disk, without reading its matrix into memory (seconds).

The same call takes an .h5ad or .zarr path or a backed AnnData; docs/scale.md has the memory and speed numbers.
"""

import anndata as ad
import scipy.sparse as sp

import virtualcell as vc
from virtualcell.datasets import simulate_perturbation

adata = simulate_perturbation(n_cells_per_group=80, n_genes=100, n_cell_types=4, counts=True, seed=0)
adata.X = sp.csr_matrix(adata.X)                                   # sparse counts, as atlases ship
held_out = (adata.obs.cell_type == "type_0") & (adata.obs.condition == "stimulated")
adata[~held_out].copy().write_h5ad("train.h5ad")                  # the training set lives on disk

pipeline = vc.PerturbationPipeline(encoder={"name": "vae", "n_hidden": 64, "n_latent": 10, "max_epochs": 3},
                                   preprocess="log1p")
pipeline.fit("train.h5ad", context_key="cell_type", seed=0,        # shuffled blocks of rows read per batch
             disk={"block_size": 32, "pool_blocks": 16})
print(pipeline.encoder.history.record()["cells_per_s"], "cells/s,",
      pipeline.encoder.history.record()["peak_memory_mb"], "MB peak")

backed = ad.read_h5ad("train.h5ad", backed="r")                    # a backed AnnData works the same
exact = vc.PerturbationPipeline(encoder={"name": "vae", "n_hidden": 64, "n_latent": 10, "max_epochs": 3},
                                preprocess="log1p").fit(backed, context_key="cell_type", seed=0, disk={"exact": True})
control = adata[(adata.obs.cell_type == "type_0") & (adata.obs.condition == "control")].copy()
predicted = exact.predict(control, target="stimulated")            # = the in-memory fit with the same seed
print(predicted)
