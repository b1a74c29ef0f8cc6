"""Exact kNN against scikit-learn, filters, the approximate index saved in the store, centroids, results."""

import numpy as np
import pandas as pd
import pytest

from virtualcell.store import EmbeddingStore, StoreError
from virtualcell.store.query import centroid, centroids, neighbours_anndata, neighbours_frame, shift


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=4, size=(3, 8))
    labels = rng.integers(0, 3, size=600)
    values = (centres[labels] + rng.normal(size=(600, 8))).astype(np.float32)
    obs = pd.DataFrame({"cell_type": pd.Categorical(np.array(["B", "T", "NK"])[labels]),
                        "condition": np.where(rng.random(600) < 0.5, "control", "stim")},
                       index=[f"c{i}" for i in range(600)])
    store = EmbeddingStore(tmp_path_factory.mktemp("knn") / "s.zarr")
    store.write("k", values, obs=obs, chunk_rows=64)
    return store, values, obs


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_exact_matches_brute_force(cells, metric):
    from sklearn.neighbors import NearestNeighbors

    store, values, _ = cells
    query = np.random.default_rng(1).normal(scale=3, size=(37, 8)).astype(np.float32)
    rows, distances = store.nearest("k", query, k=7, metric=metric, batch_size=16)
    truth = NearestNeighbors(n_neighbors=7, metric=metric, algorithm="brute").fit(values)
    true_distances, true_rows = truth.kneighbors(query)
    np.testing.assert_array_equal(rows, true_rows)
    np.testing.assert_allclose(distances, true_distances, atol=2e-3)


def test_filtered_search_returns_only_matching_rows(cells):
    from sklearn.neighbors import NearestNeighbors

    store, values, obs = cells
    where = 'cell_type == "T" & condition == "stim"'
    allowed = np.flatnonzero(((obs.cell_type == "T") & (obs.condition == "stim")).to_numpy())
    rows, _ = store.nearest("k", values[:5], k=4, where=where)
    truth = NearestNeighbors(n_neighbors=4).fit(values[allowed]).kneighbors(values[:5])[1]
    np.testing.assert_array_equal(rows, allowed[truth])
    with pytest.raises(StoreError, match=rf"k must lie in \[1, {len(allowed)}\]"):
        store.nearest("k", values[:1], k=len(allowed) + 1, where=where)


def test_bad_queries_are_explained(cells):
    store, values, _ = cells
    with pytest.raises(StoreError, match=r"query must be \[m, 8\]"):
        store.nearest("k", np.zeros((2, 3)), k=1)
    with pytest.raises(StoreError, match="Unknown metric 'manhattan'"):
        store.nearest("k", values[:1], k=1, metric="manhattan")
    with pytest.raises(StoreError, match="all-zero query"):
        store.nearest("k", np.zeros((1, 8)), k=1, metric="cosine")
    with pytest.raises(StoreError, match="whole number"):
        store.nearest("k", values[:1], k=2.5)
    with pytest.raises(StoreError, match="no approximate index"):
        store.nearest("k", values[:1], k=1, approximate=True)


@pytest.mark.parametrize("library", ["hnswlib", "usearch", "faiss"])
def test_approximate_index_is_saved_in_the_store_with_its_recall(cells, library, tmp_path):
    pytest.importorskip(library)  # hnswlib builds from source; CI may have only the wheels of the others
    store, values, obs = cells
    copy = EmbeddingStore(tmp_path / "a.zarr")
    copy.write("k", values, obs=obs, chunk_rows=64)
    built = copy.build_index("k", library=library, k=5, n_check=200, threads=1, progress=False)  # 1: same graph each run
    assert built.info["recall_at_k"] >= 0.99 and built.info["library"] == library
    files = [p.name for p in (tmp_path / "a.zarr" / "k" / "index").rglob("*") if p.is_file()]
    assert not [f for f in files if f.endswith((".pkl", ".pickle"))]
    reopened = EmbeddingStore(tmp_path / "a.zarr", mode="r")
    rows, distances = reopened.nearest("k", values[:20], k=5, approximate=True)
    exact, exact_distances = reopened.nearest("k", values[:20], k=5)
    assert np.mean([len(set(a) & set(b)) / 5 for a, b in zip(rows, exact)]) >= 0.95
    same = rows[:, 0] == exact[:, 0]
    assert same.mean() >= 0.9
    np.testing.assert_allclose(distances[same, 0], exact_distances[same, 0], atol=2e-3)
    copy.append("k", values[:3], obs=obs.iloc[:3].rename(index=lambda name: f"{name}-again"))
    with pytest.raises(StoreError, match="index covers 600 rows but 603 are stored"):
        copy.nearest("k", values[:1], k=1, approximate=True)


def test_tampered_index_is_refused(cells, tmp_path):
    store, values, obs = cells
    copy = EmbeddingStore(tmp_path / "a.zarr")
    copy.write("k", values, obs=obs)
    copy.build_index("k", n_check=50, progress=False)
    data = copy.group("k")["index"]["data"]
    data[:4] = np.frombuffer(b"evil", dtype=np.uint8)
    with pytest.raises(StoreError, match="do not match their recorded sha256"):
        copy.nearest("k", values[:1], k=1, approximate=True)
    copy.group("k")["index"].attrs["library"] = "os.system"
    with pytest.raises(StoreError, match="names library 'os.system'"):
        copy.nearest("k", values[:1], k=1, approximate=True)


def test_centroids_and_state_arithmetic(cells):
    store, values, obs = cells
    b = (obs.cell_type == "B").to_numpy()
    np.testing.assert_allclose(centroid(store, "k", 'cell_type == "B"'), values[b].mean(0), atol=1e-5)
    table = centroids(store, "k", "cell_type", where='condition == "stim"')
    stim = (obs.condition == "stim").to_numpy()
    assert table.loc["T", "n_cells"] == ((obs.cell_type == "T").to_numpy() & stim).sum()
    np.testing.assert_allclose(table.loc["NK"].to_numpy()[1:], values[(obs.cell_type == "NK").to_numpy() & stim].mean(0), atol=1e-5)
    moved = shift(store, "k", 'cell_type == "B" & condition == "control"', source='cell_type == "B"', target='cell_type == "T"')
    expected = values[b & ~stim] + values[(obs.cell_type == "T").to_numpy()].mean(0) - values[b].mean(0)
    np.testing.assert_allclose(moved, expected, atol=1e-4)
    with pytest.raises(StoreError, match="matches"):
        centroid(store, "k", 'cell_type == "Mono"')


def test_results_as_dataframe_and_anndata(cells):
    store, values, obs = cells
    rows, distances = store.nearest("k", values[[3, 4]], k=3)
    frame = neighbours_frame(store, "k", rows, distances, query_names=["c3", "c4"])
    assert list(frame.columns[:5]) == ["query", "rank", "row", "cell", "distance"]
    assert frame["cell"].tolist()[0] == "c3" and frame["distance"].iloc[0] == 0
    assert frame["cell_type"].tolist() == obs.cell_type.iloc[rows.ravel()].tolist()
    adata = neighbours_anndata(store, "k", rows, distances, query_names=["c3", "c4"])
    assert adata.shape == (6, 8) and np.allclose(adata.X, values[rows.ravel()])
