"""Gene networks: co-expression and k-NN graphs recover co-expressed modules; edge lists align and report drops."""

import json

import numpy as np
import pytest

from virtualcell.data.checks import DataError
from virtualcell.data.gene_networks import (build_network, coexpression_network, gene_embedding, knn_network,
                                            load_network, read_edge_list, save_network)
from virtualcell.data.simulate_screen import simulate_screen


@pytest.fixture(scope="module")
def control():
    adata = simulate_screen(n_genes=30, n_modules=3, n_targets=4, n_control=150, n_per_target=10, seed=1)
    ctrl = adata[adata.obs.condition == "control"]
    return np.asarray(ctrl.X), list(adata.var_names), adata.var["module"].to_numpy()


def _within_module(graph, genes, module):
    where = {g: m for g, m in zip(genes, module)}
    return np.mean([where[u] == where[v] for u, v in graph.edges])


def test_coexpression_recovers_modules(control):
    x, genes, module = control
    graph = coexpression_network(x, genes, k=5)
    assert set(graph.nodes) == set(genes)
    assert all(0 < d["weight"] <= 1 for _, _, d in graph.edges(data=True))
    assert _within_module(graph, genes, module) > 0.9          # chance is 1/3


def test_knn_in_embedding_space_recovers_modules(control):
    x, genes, module = control
    embedding = gene_embedding(x, n_components=5)
    assert embedding.shape == (len(genes), 5)
    np.testing.assert_array_equal(embedding, gene_embedding(x, n_components=5))   # deterministic
    assert _within_module(knn_network(embedding, genes, k=5), genes, module) > 0.8


def test_edge_list_aligns_and_counts_dropped(tmp_path, control):
    _, genes, _ = control
    path = tmp_path / "string.tsv"
    path.write_text("gene_a\tgene_b\tweight\n"
                    f"{genes[0]}\t{genes[1]}\t0.9\n{genes[1]}\t{genes[2]}\t-0.4\n"
                    f"{genes[0]}\tNOT_A_GENE\t0.7\nALSO_MISSING\tNOT_A_GENE\t0.1\n")
    graph, report = read_edge_list(path, genes)
    assert graph.number_of_edges() == 2 and graph[genes[1]][genes[2]]["weight"] == pytest.approx(0.4)
    assert report.dropped_genes == ["ALSO_MISSING", "NOT_A_GENE"] and report.n_dropped_edges == 2
    assert "dropped 2 gene(s)" in report.summary()
    kept, _ = read_edge_list(path, genes, extra_nodes=["NOT_A_GENE"])      # e.g. a targeted gene not measured
    assert kept.has_edge(genes[0], "NOT_A_GENE")


def test_edge_list_csv_without_weights(tmp_path, control):
    _, genes, _ = control
    path = tmp_path / "go.csv"
    path.write_text(f"source,target\n{genes[3]},{genes[4]}\n")
    graph, report = build_network(str(path), None, genes)
    assert graph[genes[3]][genes[4]]["weight"] == 1.0 and report.n_edges == 1


def test_bad_edge_lists_say_what_is_wrong(tmp_path, control):
    _, genes, _ = control
    unknown = tmp_path / "ensembl.tsv"
    unknown.write_text("a\tb\tweight\nENSG1\tENSG2\t1\n")
    with pytest.raises(DataError, match="none of its 1 edge"):
        read_edge_list(unknown, genes)
    bad_weight = tmp_path / "bad.tsv"
    bad_weight.write_text(f"a\tb\tweight\n{genes[0]}\t{genes[1]}\thigh\n")
    with pytest.raises(DataError, match="non-numeric"):
        read_edge_list(bad_weight, genes)
    with pytest.raises(DataError, match="no column"):
        read_edge_list(bad_weight, genes, columns=("x", "y"))
    with pytest.raises(DataError, match="No edge list"):
        read_edge_list(tmp_path / "missing.tsv", genes)
    with pytest.raises(DataError, match="Unknown gene network source"):
        build_network("string-db", None, genes)


def test_save_load_round_trip_is_json(tmp_path, control):
    x, genes, _ = control
    graph = coexpression_network(x, genes, k=3)
    path = save_network(graph, tmp_path / "net" / "network.json")
    json.loads(path.read_text())                                   # plain JSON, no pickle
    loaded = load_network(path)
    assert sorted(loaded.edges) == sorted(graph.edges)
    assert all(loaded[u][v]["weight"] == pytest.approx(d["weight"]) for u, v, d in graph.edges(data=True))
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(DataError, match="not a gene network"):
        load_network(tmp_path / "junk.json")
