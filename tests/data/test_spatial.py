"""Spatial neighbour graphs (k nearest, radius, per section), their errors, and the slide simulator."""

import numpy as np
import pytest

from virtualcell.data.simulate_spatial import simulate_spatial
from virtualcell.data.spatial import SpatialGraphError, build_spatial_graph, graph_of, spatial_neighbors


def _brute_knn(coords, k):
    d = np.linalg.norm(coords[:, None] - coords[None], axis=2)
    np.fill_diagonal(d, np.inf)
    return np.argsort(d, axis=1)[:, :k]


def test_knn_matches_brute_force():
    coords = np.random.default_rng(0).uniform(size=(80, 2))
    graph = build_spatial_graph(coords, n_neighbors=5)
    assert np.array_equal(graph.indices.reshape(80, 5), _brute_knn(coords, 5))
    assert np.allclose(graph.distances.reshape(80, 5)[:, 0],
                       np.linalg.norm(coords - coords[_brute_knn(coords, 1)[:, 0]], axis=1), atol=1e-6)
    source, target = graph.edge_index().numpy()
    assert np.array_equal(target, np.repeat(np.arange(80), 5)) and np.array_equal(source, graph.indices)


def test_radius_graph_matches_brute_force():
    coords = np.random.default_rng(1).uniform(size=(60, 2))
    graph = build_spatial_graph(coords, radius=0.2)
    d = np.linalg.norm(coords[:, None] - coords[None], axis=2)
    for i in range(60):
        expected = set(np.flatnonzero((d[i] <= 0.2) & (np.arange(60) != i)))
        assert set(graph.indices[graph.indptr[i]:graph.indptr[i + 1]]) == expected
    assert np.allclose(graph.distance_matrix().toarray()[graph.connectivities().toarray() > 0],
                       d[graph.connectivities().toarray() > 0], atol=1e-6)


def test_sections_never_mix():
    adata = simulate_spatial(200, 5, n_sections=2, seed=0)   # both sections share one coordinate frame
    graph = graph_of(adata, section_key="section", n_neighbors=6)
    section = adata.obs["section"].cat.codes.to_numpy()
    assert np.array_equal(section[graph.indices], np.repeat(section, 6))
    mixed = graph_of(adata, n_neighbors=6)
    assert (section[mixed.indices] != np.repeat(section, 6)).any()   # without the key they would mix


def test_spatial_neighbors_uses_squidpy_keys():
    adata = simulate_spatial(100, 5, seed=0)
    out = spatial_neighbors(adata, n_neighbors=4, copy=True)
    assert "spatial_connectivities" not in adata.obsp
    assert out.obsp["spatial_connectivities"].shape == (100, 100)
    assert (out.obsp["spatial_connectivities"].sum(axis=1) == 4).all()
    assert out.uns["spatial_neighbors"]["connectivities_key"] == "spatial_connectivities"
    assert out.uns["spatial_neighbors"]["params"]["n_neighs"] == 4


def test_neighbour_mean():
    coords = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [10.0, 10.0]])
    graph = build_spatial_graph(coords, n_neighbors=2)
    x = np.arange(8, dtype=np.float32).reshape(4, 2)
    assert np.allclose(graph.neighbour_mean(x)[0], x[[1, 2]].mean(0))


def test_missing_spatial_key_names_existing_keys():
    adata = simulate_spatial(50, 5, seed=0)
    adata.obsm["X_umap"] = adata.obsm.pop("spatial")
    with pytest.raises(SpatialGraphError, match=r"obsm\['spatial'\] not found.*X_umap"):
        graph_of(adata)


def test_nan_coordinates_are_named():
    adata = simulate_spatial(50, 5, seed=0)
    adata.obsm["spatial"][3] = np.nan
    with pytest.raises(SpatialGraphError, match="NaN or infinite coordinates for 1 cells.*cell_3"):
        graph_of(adata)


def test_duplicate_coordinates_are_refused():
    adata = simulate_spatial(50, 5, seed=0)
    adata.obsm["spatial"][7] = adata.obsm["spatial"][2]
    with pytest.raises(SpatialGraphError, match="1 cells at duplicated coordinates"):
        graph_of(adata)


def test_section_with_fewer_cells_than_k():
    adata = simulate_spatial(60, 5, n_sections=2, seed=0)
    adata.obs["section"] = adata.obs["section"].astype(str)
    adata.obs.loc[adata.obs_names[:3], "section"] = "tiny"
    with pytest.raises(SpatialGraphError, match="section 'tiny' has 3 cells, too few for 10 neighbours"):
        graph_of(adata, section_key="section", n_neighbors=10)
    with pytest.raises(SpatialGraphError, match="section key"):
        graph_of(adata, section_key="slide")


def test_simulator_is_seeded_and_layered():
    a, b = simulate_spatial(300, 10, counts=True, seed=4), simulate_spatial(300, 10, counts=True, seed=4)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.obsm["spatial"], b.obsm["spatial"])
    assert np.allclose(a.X, np.round(a.X)) and a.X.min() >= 0
    depth = a.obsm["spatial"][:, 1]
    means = a.obs.assign(depth=depth).groupby("true_domain", observed=True)["depth"].mean().to_numpy()
    assert np.all(np.diff(means) > 0)      # domains are layers stacked along y
