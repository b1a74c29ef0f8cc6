"""PerturbationPipeline end to end on simulated data, and every bad input of issue #2 with a clear error."""

import numpy as np
import pytest
import torch

import virtualcell as vc
from virtualcell import DataError
from virtualcell.datasets import simulate_perturbation
from virtualcell.metrics import perturbation_metrics
from virtualcell.registry import TamperedArtifactError, UnknownComponentError


@pytest.fixture(scope="module")
def data():
    adata = simulate_perturbation(n_cells_per_group=60, n_genes=50, n_cell_types=3, seed=0)
    held = (adata.obs["cell_type"] == "type_0").to_numpy()
    stim = (adata.obs["condition"] == "stimulated").to_numpy()
    return adata, adata[~(held & stim)].copy(), adata[held & ~stim].copy(), adata[held & stim].copy()


def _fit(train, manipulator="latent-arithmetic", **kwargs):
    return vc.PerturbationPipeline(encoder={"name": "pca", "n_components": 20}, manipulator=manipulator, **kwargs).fit(
        train, condition_key="condition", control="control", context_key="cell_type", progress=False)


@pytest.mark.parametrize("held_out", ["type_0", "type_1", "type_2", "type_3"])
def test_latent_arithmetic_recovers_held_out_effect_and_beats_control(held_out):
    """The demo's setting (``virtualcell demo``): 4 cell types x 2 conditions x 150 cells, 200 genes."""
    adata = simulate_perturbation(n_cells_per_group=150, n_genes=200, n_cell_types=4, seed=0)
    held = (adata.obs["cell_type"] == held_out).to_numpy()
    stim_mask = (adata.obs["condition"] == "stimulated").to_numpy()
    train, ctrl, stim = adata[~(held & stim_mask)].copy(), adata[held & ~stim_mask], adata[held & stim_mask]
    scores = {}
    for name in ("latent-arithmetic", "control"):
        predicted = _fit(train, name).predict(ctrl, target="stimulated")
        scores[name] = perturbation_metrics(predicted.X, stim.X, ctrl.X, list(adata.var_names))
    assert scores["latent-arithmetic"]["pearson_delta"] > 0.9
    assert scores["latent-arithmetic"]["r2_mean_top100"] > scores["control"]["r2_mean_top100"]
    assert scores["latent-arithmetic"]["edistance_ratio"] < scores["control"]["edistance_ratio"]


def test_output_anndata_layout(data):
    _, train, ctrl, _ = data
    predicted = _fit(train).predict(ctrl, target="stimulated", n_samples=3, key_added="vc")
    assert predicted.shape == ctrl.shape and list(predicted.var_names) == list(ctrl.var_names)
    assert list(predicted.obs_names) == [f"{name}-pred-stimulated" for name in ctrl.obs_names]
    assert list(predicted.obs["source_cell"]) == list(ctrl.obs_names)
    assert (predicted.obs["condition"] == "stimulated").all() and (predicted.obs["condition_source"] == "control").all()
    assert {"variance", "q05", "q95"} <= set(predicted.layers) and "X_vc" in predicted.obsm
    assert predicted.X.min() >= 0, "predictions must never be negative in expression space"
    assert predicted.uns["vc"]["call"]["target"] == "stimulated"
    assert ctrl.obs["condition"].eq("control").all(), "the user's AnnData must not change"


def test_save_load_gives_identical_predictions(data, tmp_path):
    _, train, ctrl, _ = data
    pipeline = _fit(train)
    expected = pipeline.predict(ctrl, target="stimulated").X
    pipeline.save(tmp_path / "pipe")
    loaded = vc.PerturbationPipeline.load(tmp_path / "pipe")
    np.testing.assert_array_equal(loaded.predict(ctrl, target="stimulated").X, expected)


def test_gene_order_is_aligned_automatically(data):
    _, train, ctrl, _ = data
    pipeline = _fit(train)
    shuffled = ctrl[:, ctrl.var_names[::-1]].copy()
    np.testing.assert_allclose(pipeline.predict(shuffled, target="stimulated").X,
                               pipeline.predict(ctrl, target="stimulated").X, rtol=1e-5, atol=1e-5)


def test_counts_input_with_log1p_preprocessing():
    counts = simulate_perturbation(n_cells_per_group=40, n_genes=40, n_cell_types=2, counts=True, seed=1)
    pipeline = vc.PerturbationPipeline(encoder="pca", manipulator="mean-shift", preprocess="log1p")
    pipeline.fit(counts, context_key="cell_type", progress=False)
    predicted = pipeline.predict(counts[counts.obs["condition"] == "control"], target="stimulated")
    assert predicted.X.max() < 15, "predictions are log-normalised"
    assert pipeline.metadata["preprocessing"]["log1p"] is True


# -- bad input: each error names the problem and the fix --------------------------------------------------------

def test_missing_condition_key(data):
    _, train, _, _ = data
    with pytest.raises(DataError, match=r"condition key 'treatment' is not a column.*available columns: \['condition', 'cell_type'\]"):
        vc.PerturbationPipeline().fit(train, condition_key="treatment")


def test_unknown_control_label(data):
    _, train, _, _ = data
    with pytest.raises(DataError, match=r"Control label 'ctrl' is not in.*Pass control="):
        vc.PerturbationPipeline().fit(train, control="ctrl")


def test_unknown_target_condition(data):
    _, train, ctrl, _ = data
    with pytest.raises(DataError, match=r"Unknown condition value 'IFNB'; known condition values: \['control', 'stimulated'\]"):
        _fit(train).predict(ctrl, target="IFNB")


def test_context_without_control_cells(data):
    _, train, _, _ = data
    bad = train[~((train.obs["cell_type"] == "type_2") & (train.obs["condition"] == "control"))].copy()
    with pytest.raises(DataError, match=r"\['type_2'\] have no 'control' cells"):
        _fit(bad)


def test_missing_genes_are_named(data):
    _, train, ctrl, _ = data
    pipeline = _fit(train)
    with pytest.raises(DataError, match=r"3 of 50 genes the model needs are missing.*'gene_0', 'gene_1', 'gene_2'"):
        pipeline.predict(ctrl[:, 3:].copy(), target="stimulated")


def test_nan_values(data):
    _, train, _, _ = data
    bad = train.copy()
    bad.X[0, 0] = np.nan
    with pytest.raises(DataError, match="1 NaN or infinite values"):
        _fit(bad)


def test_negative_values(data):
    _, train, _, _ = data
    bad = train.copy()
    bad.X[0, 0] = -1.0
    with pytest.raises(DataError, match="negative values.*sc.pp.scale"):
        _fit(bad)


def test_counts_given_as_log_data():
    counts = simulate_perturbation(n_cells_per_group=30, n_genes=30, n_cell_types=2, counts=True, seed=2)
    with pytest.raises(DataError, match="looks like raw counts.*preprocess='log1p'"):
        vc.PerturbationPipeline().fit(counts, context_key="cell_type")


def test_log_data_given_as_counts(data):
    _, train, _, _ = data
    with pytest.raises(DataError, match="non-integer values but raw counts are expected"):
        vc.PerturbationPipeline(preprocess="log1p").fit(train, context_key="cell_type")


def test_empty_group(data):
    _, train, _, _ = data
    with pytest.raises(DataError, match="No cells to predict from"):
        _fit(train).predict(train[:0], target="stimulated")


def test_edited_artifact_and_unknown_component(data, tmp_path):

    _, train, ctrl, _ = data
    path = _fit(train).save(tmp_path / "pipe")
    weights = path / "manipulator" / "weights.safetensors"
    original = weights.read_bytes()
    weights.write_bytes(original[:-4] + b"\x00\x00\x00\x01")
    with pytest.raises(TamperedArtifactError, match="manipulator/weights.safetensors was modified"):
        vc.PerturbationPipeline.load(path)
    weights.write_bytes(original)
    spec = path / "pipeline.json"
    spec.write_text(spec.read_text().replace('"control": "control"', '"control": "stimulated"'))
    with pytest.raises(TamperedArtifactError, match="pipeline.json was edited"):
        vc.PerturbationPipeline.load(path)
    with pytest.raises(UnknownComponentError, match="No component named 'scgen-original'.*Known components"):
        vc.PerturbationPipeline(manipulator="scgen-original")


def test_wrong_kind_is_refused():
    with pytest.raises(TypeError, match="is a manipulator, not an encoder"):
        vc.PerturbationPipeline(encoder="mean-shift")


def test_seeded_balancing_is_deterministic(data):
    _, train, ctrl, _ = data
    a = _fit(train).predict(ctrl, target="stimulated").X
    b = _fit(train).predict(ctrl, target="stimulated").X
    np.testing.assert_array_equal(a, b)


def test_identity_gene_space_pipeline(data):
    _, train, ctrl, stim = data
    pipeline = vc.PerturbationPipeline(encoder="identity-encoder", manipulator="mean-shift").fit(train, context_key="cell_type")
    predicted = pipeline.predict(ctrl, target="stimulated")
    shift = torch.as_tensor(predicted.X - ctrl.X).clamp_min(0)
    assert shift.abs().sum() > 0
