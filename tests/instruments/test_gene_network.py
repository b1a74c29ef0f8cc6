"""gene-network: predicts unseen knockouts from the network, beats mean-perturbation on a screen that follows one."""

import numpy as np
import pytest
import torch

from virtualcell import PerturbationPipeline
from virtualcell.data.simulate_screen import simulate_screen
from virtualcell.instruments.manipulators.gene_network import SCALE_GRID, GeneNetworkManipulator

FAST = {"name": "gene-network", "epochs": 60, "hidden": 16}


@pytest.fixture(scope="module")
def screen_data():
    return simulate_screen(n_genes=40, n_modules=4, n_targets=6, n_control=80, n_per_target=20, seed=2)


def _fit(adata, held_out, manipulator=FAST):
    pipe = PerturbationPipeline(encoder="identity-encoder", manipulator=dict(manipulator))
    pipe.fit(adata[adata.obs.condition != held_out].copy(), condition_key="condition", control="control",
             progress=False, extra_conditions=[held_out])
    return pipe


def _pearson_delta(pipe, adata, target):
    ctrl = adata[adata.obs.condition == "control"]
    base = np.asarray(ctrl.X).mean(0)
    pred = np.asarray(pipe.predict(ctrl, target=target).X).mean(0) - base
    real = np.asarray(adata[adata.obs.condition == target].X).mean(0) - base
    return float(np.corrcoef(pred, real)[0, 1])


def test_unseen_targets_beat_mean_perturbation(screen_data):
    targets = screen_data.uns["simulate_screen"]["targets"][:3]
    network = [_pearson_delta(_fit(screen_data, t), screen_data, t) for t in targets]
    mean = [_pearson_delta(_fit(screen_data, t, {"name": "mean-perturbation"}), screen_data, t) for t in targets]
    assert np.mean(network) > np.mean(mean) + 0.1, (network, mean)


def test_conditions_name_the_network_and_survive_save_load(screen_data, tmp_path):
    held = screen_data.uns["simulate_screen"]["targets"][0]
    pipe = _fit(screen_data, held)
    manipulator = pipe.manipulator
    assert manipulator.condition_names == pipe.conditions.labels
    assert set(screen_data.var_names) <= set(pipe.conditions.labels)          # every gene of the network has an id
    assert not bool(manipulator.seen[pipe.conditions.id(held)])
    assert float(manipulator.scale_used) in SCALE_GRID
    assert manipulator.edge_index.shape[0] == 2 and manipulator.edge_index.shape[1] > 0
    ctrl = screen_data[screen_data.obs.condition == "control"]
    expected = pipe.predict(ctrl, target=held).X
    pipe.save(tmp_path / "model")
    loaded = PerturbationPipeline.load(tmp_path / "model")
    np.testing.assert_allclose(loaded.predict(ctrl, target=held).X, expected, atol=1e-5)
    assert loaded.manipulator.nodes == manipulator.nodes


def test_seed_determinism(screen_data):
    held = screen_data.uns["simulate_screen"]["targets"][1]
    ctrl = screen_data[screen_data.obs.condition == "control"]
    a, b = (_fit(screen_data, held).predict(ctrl, target=held).X for _ in range(2))
    np.testing.assert_array_equal(a, b)


def test_target_outside_the_network_is_refused(screen_data):
    pipe = _fit(screen_data, "NOT_A_GENE")          # an extra condition with no cells and no node
    ctrl = screen_data[screen_data.obs.condition == "control"]
    with pytest.raises(ValueError, match="not a gene of the network .*40 genes"):
        pipe.predict(ctrl, target="NOT_A_GENE")


def test_target_without_edges_is_refused_unless_network_is_none(screen_data, tmp_path):
    genes = list(screen_data.var_names)
    held = screen_data.uns["simulate_screen"]["targets"][0]
    others = [g for g in genes if g != held]
    edges = tmp_path / "edges.tsv"
    edges.write_text("a\tb\tweight\n" + "".join(f"{u}\t{v}\t1\n" for u, v in zip(others[:-1], others[1:])))
    ctrl = screen_data[screen_data.obs.condition == "control"]
    pipe = _fit(screen_data, held, {**FAST, "network": str(edges)})
    with pytest.raises(ValueError, match="no edge touches it"):
        pipe.predict(ctrl, target=held)
    features_only = _fit(screen_data, held, {**FAST, "network": "none"})
    assert np.isfinite(features_only.predict(ctrl, target=held).X).all()


def test_gcn_and_graph_conv_both_train():
    z = torch.randn(60, 4)
    labels = torch.arange(60) % 3
    from virtualcell.component import Condition

    for conv in ("gcn", "graph"):
        m = GeneNetworkManipulator(conv=conv, epochs=5, hidden=4).fit(z, Condition(labels), progress=False)
        assert m.condition_names == ["condition_0", "condition_1", "condition_2"]   # the contract's fallback
    with pytest.raises(ValueError, match="conv must be"):
        GeneNetworkManipulator(conv="gat", epochs=1).fit(z, Condition(labels), progress=False)


def test_pipeline_checks_the_named_conditions_keep_the_observed_first(screen_data, monkeypatch):
    pipe = PerturbationPipeline(encoder="identity-encoder", manipulator=dict(FAST))
    monkeypatch.setattr(pipe.manipulator, "prepare_conditions", lambda labels, **kw: list(reversed(labels)))
    with pytest.raises(ValueError, match="keep the observed labels first"):
        pipe.fit(screen_data, progress=False)


def test_edge_list_with_unknown_genes_warns_how_many_were_dropped(screen_data, tmp_path):
    genes = list(screen_data.var_names)
    edges = tmp_path / "string.tsv"
    edges.write_text("a\tb\tscore\n" + "".join(f"{u}\t{v}\t0.9\n" for u, v in zip(genes[:-1], genes[1:]))
                     + "ENSG000001\tENSG000002\t0.5\n")
    pipe = PerturbationPipeline(encoder="identity-encoder", manipulator={**FAST, "network": str(edges)})
    with pytest.warns(UserWarning, match=r"dropped 2 gene\(s\) not in the data .* and 1 edge"):
        pipe.fit(screen_data, progress=False)
    assert "39 edges" in pipe.manipulator.describe()
    assert float(pipe.manipulator.edge_weight.min()) == pytest.approx(0.9)    # the third column, auto-detected
