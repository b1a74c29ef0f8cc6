"""EmbeddingStore (zarr v3) and embed(): round trips, provenance, versions, atomic writes, queries."""

import numpy as np
import pandas as pd
import pytest

import virtualcell as vc
from virtualcell.datasets import simulate_perturbation
from virtualcell.pipelines.embed import embed
from virtualcell.representations.store import EmbeddingStore, StoreError


@pytest.fixture
def obs():
    return pd.DataFrame({"cell_type": pd.Categorical(["B", "T", "B"]), "dose": [0.0, 1.5, 3.0],
                         "donor": ["d1", "d2", "d3"]}, index=["c1", "c2", "c3"])


def test_round_trip_keeps_values_obs_and_provenance(tmp_path, obs):
    store = EmbeddingStore(tmp_path / "cells.zarr")
    values = np.arange(6, dtype=np.float32).reshape(3, 2)
    store.write("pca", values, obs=obs, provenance={"component": "pca", "n": 2})
    read = EmbeddingStore(tmp_path / "cells.zarr", mode="r").read("pca")
    np.testing.assert_array_equal(read.values, values)
    pd.testing.assert_frame_equal(read.obs, obs, check_index_type=False)
    assert read.provenance == {"component": "pca", "n": 2} and store.keys() == ["pca"]


def test_overwrite_is_explicit_and_failed_write_leaves_nothing(tmp_path, obs):
    store = EmbeddingStore(tmp_path / "cells.zarr")
    store.write("k", np.ones((3, 2)), obs=obs)
    with pytest.raises(StoreError, match="overwrite=True"):
        store.write("k", np.zeros((3, 2)), obs=obs)
    with pytest.raises(StoreError, match="NaN"):
        store.write("bad", np.full((3, 2), np.nan), obs=obs)
    with pytest.raises(StoreError, match="obs has 3 rows but values has 2"):
        store.write("k2", np.ones((2, 2)), obs=obs)
    store.write("k", np.zeros((3, 2)), obs=obs, overwrite=True)
    assert store.read("k").values.sum() == 0 and store.keys() == ["k"]
    assert not [p for p in (tmp_path / "cells.zarr").iterdir() if p.name.startswith(".")]


def test_unknown_version_asks_to_upgrade(tmp_path, obs):
    store = EmbeddingStore(tmp_path / "cells.zarr")
    store.write("k", np.ones((3, 2)), obs=obs)
    store.root["k"].attrs["encoding-version"] = "9.0.0"
    with pytest.raises(StoreError, match="Upgrade virtualcell"):
        store.read("k")
    with pytest.raises(StoreError, match=r"No embedding 'missing'.*holds \['k'\]"):
        store.read("missing")


def test_nearest_neighbours(tmp_path):
    store = EmbeddingStore(tmp_path / "s.zarr")
    store.write("k", np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]]))
    indices, distances = store.nearest("k", np.array([[0.9, 0.0]]), k=2)
    assert indices.tolist() == [[1, 0]] and np.allclose(distances, [[0.1, 0.9]], atol=1e-6)


def test_embed_with_encoder_and_pipeline(tmp_path):
    adata = simulate_perturbation(n_cells_per_group=30, n_genes=40, n_cell_types=2, seed=0)
    pipeline = vc.PerturbationPipeline(encoder={"name": "pca", "n_components": 5}, manipulator="mean-shift")
    pipeline.fit(adata, context_key="cell_type")
    out = embed(adata, pipeline, store=tmp_path / "cells.zarr", key_added="pca", copy=True)
    assert out.obsm["pca"].shape == (adata.n_obs, 5) and "pca" not in adata.obsm
    provenance = EmbeddingStore(tmp_path / "cells.zarr").read("pca").provenance
    assert provenance["component"] == "PCAEncoder" and len(provenance["weights_sha256"]) == 64
    path = pipeline.encoder.save(tmp_path / "enc")
    embed(adata, path, key_added="again")
    np.testing.assert_allclose(adata.obsm["again"], out.obsm["pca"], atol=1e-5)
