"""DiskCells: a selection of a store's cells, fitted from disk as the same selection in memory."""

from __future__ import annotations

import numpy as np
import pytest

import virtualcell as vc
from virtualcell.train.disk_cells import DiskCells

RECIPE = {"normalize_total": 1e4, "log1p": True, "n_top_genes": 24, "hvg_flavor": "seurat"}


@pytest.fixture(scope="module")
def store(counts_store):
    return counts_store


def test_a_selection_reads_its_own_rows_and_obs(store):
    adata, path = store
    cells = DiskCells.open(path, ["condition", "cell_type"])
    assert cells.shape == adata.shape and list(cells.obs.columns) == ["condition", "cell_type"]
    mask = (adata.obs["cell_type"] != adata.obs["cell_type"].iloc[0]).to_numpy()
    train = cells[mask]
    assert train.n_obs == int(mask.sum())
    np.testing.assert_array_equal(train.obs["condition"].astype(str), adata.obs["condition"][mask].astype(str))
    np.testing.assert_array_equal(train.read().toarray(), adata.X[mask].toarray())
    nested = train[np.arange(0, train.n_obs, 3)]                     # positions of a selection compose
    np.testing.assert_array_equal(nested.read().toarray(), adata.X[np.flatnonzero(mask)[::3]].toarray())
    memory = nested.to_memory()
    np.testing.assert_array_equal(memory.X.toarray(), adata.X[np.flatnonzero(mask)[::3]].toarray())
    with pytest.raises(IndexError, match="sorted"):
        cells[np.array([3, 1])]
    with pytest.raises(IndexError, match="boolean mask"):
        cells[mask[:-1]]


@pytest.mark.parametrize("disk", [{"exact": True}, None])
def test_fit_on_a_selection_equals_the_in_memory_fit_of_it(store, disk):
    """``disk`` None: the small selection is read whole (one pool); exact: per-batch reads of its rows."""
    adata, path = store
    held_out = (adata.obs["cell_type"] == adata.obs["cell_type"].cat.categories[0]) & (adata.obs["condition"] != "control")
    mask = ~held_out.to_numpy()
    control = adata[held_out.index[(adata.obs["condition"] == "control").to_numpy()]][:20].copy()

    def fit(data, **kw):
        pipe = vc.PerturbationPipeline(encoder={"name": "pca", "n_components": 5}, preprocess=dict(RECIPE))
        return pipe.fit(data, context_key="cell_type", progress=False, seed=0, **kw)

    memory = fit(adata[mask].copy())
    disk_fit = fit(DiskCells.open(path, ["condition", "cell_type"])[mask], disk=disk)
    assert disk_fit.metadata["training"]["n_cells"] == int(mask.sum())
    assert disk_fit.preprocessing.genes == memory.preprocessing.genes
    np.testing.assert_allclose(disk_fit.predict(control, target="stimulated").X,
                               memory.predict(control, target="stimulated").X, atol=1e-4)


def test_pickled_cells_leave_their_owner_behind(store):
    """Worker processes get the cells without ``owner`` (a temporary folder stays with the process that made it)."""
    import pickle
    import tempfile

    _, path = store
    folder = tempfile.TemporaryDirectory()
    cells = DiskCells.open(path, ["condition"], owner=folder)[np.arange(5)]
    assert cells.owner is folder
    copy = pickle.loads(pickle.dumps(cells))
    assert copy.owner is None and copy.rows.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(copy.read().toarray(), cells.read().toarray())
    folder.cleanup()
