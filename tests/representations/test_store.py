"""EmbeddingStore (zarr v3) and embed(): round trips, provenance, versions, atomic writes, queries."""

import numpy as np
import pandas as pd
import pytest

import virtualcell as vc
from virtualcell.datasets import simulate_perturbation
from virtualcell.pipelines.embed import embed
from virtualcell.store import EmbeddingStore, StoreError


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
    leftovers = [p.name for p in (tmp_path / "cells.zarr").iterdir() if p.name.startswith(".")]
    assert leftovers == [".virtualcell-locks"]  # writers' lock files only: no temporary keys


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


# -- issue 12: obs through anndata's element IO, NaN queries, hostile stores --------------------------

OBS_COLUMNS = {
    "bool": [True, False, True],
    "text_with_none": ["a", None, "c"],
    "text": ["x", "y", "z"],
    "nullable_int": pd.array([1, None, 3], dtype="Int64"),
    "nullable_bool": pd.array([True, None, False], dtype="boolean"),
    "categorical": pd.Categorical(["B", "T", "B"], categories=["T", "B", "NK"]),
    "datetime": pd.to_datetime(["2020-01-01 10:00", None, "2021-05-05 00:00"]),
    "datetime_utc": pd.to_datetime(["2020-01-01", "2020-06-01", None]).tz_localize("UTC"),
    "string_dtype": pd.array(["p", None, "q"], dtype="string"),
    "float_nan": [0.5, np.nan, 1.0],
    "uint8": np.array([1, 2, 3], dtype="uint8"),
}


@pytest.mark.parametrize("column", sorted(OBS_COLUMNS))
def test_obs_types_survive_a_round_trip(tmp_path, column):
    obs = pd.DataFrame({column: OBS_COLUMNS[column]}, index=["c1", "c2", "c3"])
    store = EmbeddingStore(tmp_path / "cells.zarr")
    store.write("k", np.zeros((3, 2)), obs=obs)
    read = EmbeddingStore(tmp_path / "cells.zarr", mode="r").read("k").obs
    pd.testing.assert_frame_equal(read, obs, check_index_type=False)


def test_obs_is_an_anndata_dataframe_element(tmp_path, obs):
    from anndata.io import read_elem

    store = EmbeddingStore(tmp_path / "cells.zarr")
    store.write("k", np.ones((3, 2)), obs=obs)
    part = store.snapshot("k").obs_parts[0][0]
    group = store.root["k"]["obs"][part]
    assert group.attrs["encoding-type"] == "dataframe"
    pd.testing.assert_frame_equal(read_elem(group), obs, check_index_type=False)


def test_mixed_type_obs_column_is_refused_with_the_fix(tmp_path):
    obs = pd.DataFrame({"mixed": ["a", 1, 2.5]}, index=["c1", "c2", "c3"])
    with pytest.raises(StoreError, match=r"mixes types.*astype\(str\)"):
        EmbeddingStore(tmp_path / "cells.zarr").write("k", np.ones((3, 2)), obs=obs)
    assert EmbeddingStore(tmp_path / "cells.zarr").keys() == []


def test_nan_query_is_refused(tmp_path):
    store = EmbeddingStore(tmp_path / "s.zarr")
    store.write("k", np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]]))
    for bad in ([[np.nan, 0.0]], [[0.0, np.inf]]):
        with pytest.raises(StoreError, match=r"rows \[0\] contain NaN or inf"):
            store.nearest("k", np.array(bad), k=1)
    with pytest.raises(StoreError, match=r"k must lie in \[1, 3\]"):
        store.nearest("k", np.zeros((1, 2)), k=4)
    with pytest.raises(StoreError, match=r"k must lie in \[1, 3\]"):
        store.nearest("k", np.zeros((1, 2)), k=0)


def _edit_json(path, change):
    import json

    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("part_name", ["../../outside", "/etc/passwd", ".hidden", "a/../../b", 7])
def test_hostile_obs_part_names_are_refused(tmp_path, obs, part_name):
    root = tmp_path / "cells.zarr"
    EmbeddingStore(root).write("k", np.ones((3, 2)), obs=obs)
    _edit_json(root / "k" / "zarr.json",
               lambda d: d["attributes"]["committed"].update(obs_parts=[[part_name, 3]]))
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(StoreError, match="Invalid obs part"):
        EmbeddingStore(root, mode="r").read("k")
    with pytest.raises(StoreError, match="Invalid obs part"):
        EmbeddingStore(root).append("k", np.ones((1, 2)), obs=obs.iloc[:1])
    assert sorted(p for p in tmp_path.rglob("*") if ".virtualcell-locks" not in str(p)) == \
        [p for p in before if ".virtualcell-locks" not in str(p)]


@pytest.mark.parametrize("change, message", [
    (lambda d: d["attributes"]["committed"].update(n_rows=10**6), "committed row count"),
    (lambda d: d["attributes"]["committed"].update(n_rows=-1), "committed row count"),
    (lambda d: d["attributes"]["committed"].update(n_rows="3"), "committed row count"),
    (lambda d: d["attributes"]["committed"].update(obs_parts=[["x", 2]]), "obs parts hold 2 rows"),
    (lambda d: d["attributes"].update(committed=None), "no commit record"),
    (lambda d: d["attributes"].update({"encoding-version": "9.0.0"}), "Upgrade virtualcell"),
])
def test_hostile_commit_records_are_refused(tmp_path, obs, change, message):
    root = tmp_path / "cells.zarr"
    EmbeddingStore(root).write("k", np.ones((3, 2)), obs=obs)
    _edit_json(root / "k" / "zarr.json", change)
    with pytest.raises(StoreError, match=message):
        EmbeddingStore(root, mode="r").read("k")


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(shape=[2**50, 2]), "row capacity"),
    (lambda d: d["chunk_grid"]["configuration"].update(chunk_shape=[2**36, 2]), "refusing"),
    (lambda d: d.update(shape=[3, 2**20]), "dimension"),
])
def test_absurd_shapes_are_refused_before_reading(tmp_path, obs, change, message):
    root = tmp_path / "cells.zarr"
    EmbeddingStore(root).write("k", np.ones((3, 2)), obs=obs)
    _edit_json(root / "k" / "values" / "zarr.json", change)
    with pytest.raises(StoreError, match=message):
        EmbeddingStore(root, mode="r").read("k")


def test_unknown_store_version_and_foreign_groups_are_refused(tmp_path, obs):
    root = tmp_path / "cells.zarr"
    EmbeddingStore(root).write("k", np.ones((3, 2)), obs=obs)
    _edit_json(root / "zarr.json", lambda d: d["attributes"].update({"encoding-version": "7.0.0"}))
    with pytest.raises(StoreError, match="Upgrade virtualcell"):
        EmbeddingStore(root, mode="r")
    with pytest.raises(StoreError, match="Invalid key"):
        EmbeddingStore(tmp_path / "other.zarr").read("../cells.zarr/k")


def test_odd_column_names_survive_and_hostile_ones_are_refused(tmp_path):
    obs = pd.DataFrame({"my col": [1, 2], "ünïcode (µm)": ["a", "b"]}, index=["c1", "c2"])
    root = tmp_path / "cells.zarr"
    EmbeddingStore(root).write("k", np.ones((2, 2)), obs=obs)
    pd.testing.assert_frame_equal(EmbeddingStore(root, mode="r").read("k").obs, obs, check_index_type=False)
    part = EmbeddingStore(root).snapshot("k").obs_parts[0][0]
    _edit_json(root / "k" / "obs" / part / "zarr.json", lambda d: d["attributes"].update({"column-order": ["../../values"]}))
    with pytest.raises(StoreError, match=r"Invalid obs column '\.\./\.\./values'"):
        EmbeddingStore(root, mode="r").read("k")


def test_obs_arrays_claiming_absurd_sizes_are_refused(tmp_path, obs):
    root = tmp_path / "cells.zarr"
    EmbeddingStore(root).write("k", np.ones((3, 2)), obs=obs)
    part = EmbeddingStore(root).snapshot("k").obs_parts[0][0]
    _edit_json(root / "k" / "obs" / part / "dose" / "zarr.json", lambda d: d.update(shape=[2**40]))
    with pytest.raises(StoreError, match=r"column 'dose' claims 1099511627776 entries for 3 rows"):
        EmbeddingStore(root, mode="r").read("k")
