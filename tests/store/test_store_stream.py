"""Streaming embed: backed .h5ad and zarr AnnData, chunk by chunk, equal to the in-memory embedding."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from virtualcell.pipelines.embed import embed
from virtualcell.store import EmbeddingStore, StoreError


@pytest.fixture(scope="module")
def expected(atlas):
    _, adata, pipeline = atlas
    return embed(adata, pipeline, copy=True).obsm["X_virtualcell"]


@pytest.mark.parametrize("name", ["atlas.h5ad", "atlas.zarr"])
def test_stream_from_a_file_equals_in_memory(atlas, expected, tmp_path, name):
    folder, adata, pipeline = atlas
    state = embed(folder / name, pipeline, store=tmp_path / "s.zarr", key_added="pca", chunk_rows=17)
    assert state.n_rows == adata.n_obs and state.chunk_rows == 17
    stored = EmbeddingStore(tmp_path / "s.zarr", mode="r").read("pca")
    np.testing.assert_allclose(stored.values, expected, atol=1e-4)
    pd.testing.assert_frame_equal(stored.obs, adata.obs, check_index_type=False)
    assert stored.provenance["component"] == "PCAEncoder" and stored.provenance["source_data"]["n_obs"] == adata.n_obs


def test_stream_from_a_backed_anndata_and_append(atlas, expected, tmp_path):
    folder, adata, pipeline = atlas
    backed = ad.read_h5ad(folder / "atlas.h5ad", backed="r")
    embed(backed, pipeline, store=tmp_path / "s.zarr", key_added="pca", chunk_rows=40)
    again = ad.read_h5ad(folder / "again.h5ad", backed="r")  # the same cells renamed
    state = embed(again, pipeline, store=tmp_path / "s.zarr", key_added="pca", append=True)
    assert state.n_rows == 2 * adata.n_obs
    values = EmbeddingStore(tmp_path / "s.zarr").values("pca")
    np.testing.assert_allclose(values, np.vstack([expected, expected]), atol=1e-4)


def test_bare_encoder_with_recipe_and_errors(atlas, expected, tmp_path):
    folder, adata, pipeline = atlas
    path = pipeline.encoder.save(tmp_path / "encoder")
    embed(str(folder / "atlas.h5ad"), path, preprocess="log1p", store=tmp_path / "s.zarr", key_added="pca")
    np.testing.assert_allclose(EmbeddingStore(tmp_path / "s.zarr").values("pca"), expected, atol=1e-4)
    with pytest.raises(ValueError, match="pass store="):
        embed(folder / "atlas.h5ad", pipeline)
    with pytest.raises(StoreError, match="already exists.*overwrite=True"):
        embed(folder / "atlas.h5ad", pipeline, store=tmp_path / "s.zarr", key_added="pca")
    with pytest.raises(StoreError, match="has no layer 'spliced'; its layers are"):
        embed(folder / "atlas.h5ad", path, layer="spliced", store=tmp_path / "s.zarr", key_added="other")
    with pytest.raises(StoreError, match="does not exist"):
        embed(tmp_path / "missing.h5ad", pipeline, store=tmp_path / "s.zarr", key_added="other")
    assert EmbeddingStore(tmp_path / "s.zarr").keys() == ["pca"]


def test_a_failing_chunk_leaves_no_key(atlas, tmp_path):
    folder, adata, pipeline = atlas
    broken = adata.copy()
    broken.X = broken.X.toarray()
    broken.X[-1, 0] = np.nan  # the last chunk fails the expression check
    broken.write_h5ad(tmp_path / "broken.h5ad")
    with pytest.raises(ValueError, match="NaN"):
        embed(tmp_path / "broken.h5ad", pipeline, store=tmp_path / "s.zarr", key_added="pca", chunk_rows=16)
    assert EmbeddingStore(tmp_path / "s.zarr").keys() == []
