"""Benchmark, select and fit on a store that is never read whole (a minute on 2 CPU cores).

The store here is small so that the script is quick; the same calls run on an atlas of millions of cells
(docs/scale.md: "Benchmark and select from disk"). Its X is log-normalised, as the benchmark expects.
"""

import numpy as np
import scipy.sparse as sp

import virtualcell as vc
from virtualcell.datasets import simulate_perturbation
from virtualcell.evaluate import run_benchmark

adata = simulate_perturbation(n_cells_per_group=600, n_genes=60, n_cell_types=4, seed=0)   # 4,800 cells
adata.X = sp.csr_matrix(adata.X.astype(np.float32))
adata.write_h5ad("atlas.h5ad")

# 1. a selection of the store's cells, fitted from disk: nothing but obs is read until the fit streams its rows
cells = vc.DiskCells.open("atlas.h5ad", ["condition", "cell_type"])
held_out = (cells.obs["cell_type"] == "type_0").to_numpy() & (cells.obs["condition"] == "stimulated").to_numpy()
pipe = vc.PerturbationPipeline(encoder={"name": "pca", "n_components": 10})
pipe.fit(cells[~held_out], context_key="cell_type", seed=0)
print("fitted from disk on", pipe.metadata["training"]["n_cells"], "cells")

# 2. the OOS benchmark from disk: each method fitted from disk on its training cells, one unit read at a time
report = run_benchmark("atlas.h5ad", protocol="oos", encoder="pca", encoder_kwargs={"n_components": 10},
                       contexts=["type_0", "type_1"], from_disk=True, plots=False, out="bench")
for label, means in report["means"].items():
    print(f"{label:>24}: pearson_delta {means['pearson_delta']:.3f}  edistance_ratio {means['edistance_ratio']:.3f}")

# 3. select by inner cross-validation from disk, then save the winner
chosen = vc.select("atlas.h5ad", candidates=["mean-shift", "pca(n_components=10)+latent-arithmetic"],
                   context_key="cell_type", spread=False)
print("select chose", chosen.metadata["selection"]["winner"])
chosen.save("chosen")
