"""Stream an atlas into an embedding store, then query it: filters, exact and approximate neighbours,
centroids and state arithmetic. Runs in seconds on simulated data.

    python examples/atlas_query.py          (writes into a fresh temporary folder)
"""

import tempfile
from pathlib import Path

import scipy.sparse as sp

import virtualcell as vc
from virtualcell.datasets import simulate_perturbation
from virtualcell.store import EmbeddingStore
from virtualcell.store.query import centroids, neighbours_frame, shift

# 1. an "atlas" of raw counts on disk, and a pipeline (PCA + log1p recipe) fitted on part of it
atlas = simulate_perturbation(n_cells_per_group=100, n_genes=60, n_cell_types=3, counts=True, seed=0)
atlas.X = sp.csr_matrix(atlas.X)
work = Path(tempfile.mkdtemp(prefix="atlas-query-"))
atlas.write_h5ad(work / "atlas.h5ad")
pipeline = vc.PerturbationPipeline(encoder={"name": "pca", "n_components": 8}, manipulator="mean-shift",
                                   preprocess="log1p")
pipeline.fit(atlas[::2].copy(), context_key="cell_type", seed=0)

# 2. stream it into the store, 128 cells at a time (never the whole matrix in memory)
state = vc.embed(work / "atlas.h5ad", pipeline, store=work / "cells.zarr", key_added="pca", chunk_rows=128)
store = EmbeddingStore(work / "cells.zarr")
print(f"stored {state.n_rows} cells x {state.dim} dimensions; obs columns {store.obs_columns('pca')}")

# 3. a filter in the store's grammar, and exact neighbours among the cells it selects
query_rows = store.select("pca", 'cell_type == "type_0" & condition == "control"')[:3]
rows, distances = store.nearest("pca", store.values("pca", query_rows), k=5, where='condition == "stimulated"')
print(neighbours_frame(store, "pca", rows, distances).head(5).to_string(index=False))

# 4. an approximate index saved inside the store, with the recall it reached
index = store.build_index("pca", k=5, n_check=200, progress=False)
print(f"{index.library} index: recall@5 {index.info['recall_at_k']:.3f} at ef {index.info['search_ef']}")
approx_rows, _ = store.nearest("pca", store.values("pca", query_rows), k=5, approximate=True)

# 5. centroids per cell type, and control cells moved by centroid(stimulated) - centroid(control)
print(centroids(store, "pca", "cell_type", where='condition == "control"')[["n_cells"]])
moved = shift(store, "pca", 'cell_type == "type_1" & condition == "control"',
              source='condition == "control"', target='condition == "stimulated"')
nearest, _ = store.nearest("pca", moved, k=10)
share = (store.obs("pca", ["condition"])["condition"].to_numpy()[nearest] == "stimulated").mean()
print(f"neighbours of the moved cells that are stimulated cells: {share:.0%}")
print(f"store: {work / 'cells.zarr'}")
