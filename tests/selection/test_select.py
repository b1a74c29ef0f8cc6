"""Choosing a pipeline by inner cross-validation (virtualcell.selection, `virtualcell select`)."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import virtualcell as vc
from virtualcell.data.checks import DataError
from virtualcell.datasets import simulate_perturbation
from virtualcell.pipelines import EnsemblePipeline
from virtualcell.selection import load_selected, rank_entries, select_pipeline
from virtualcell.selection.auto import fit_auto
from virtualcell.selection.candidates import parse_candidate, parse_candidates, split_specs
from virtualcell.selection.folds import replicate_folds
from virtualcell.selection.stacking import stacking_weights

CHEAP = ["control", "mean-shift", "pca(n_components=8)+latent-arithmetic"]


@pytest.fixture(scope="module")
def adata():
    return simulate_perturbation(n_cells_per_group=30, n_genes=40, n_cell_types=4, seed=0)


@pytest.fixture(scope="module")
def selection(adata):
    return select_pipeline(adata, candidates=CHEAP, context_key="cell_type", n_top=20, progress=False)


def test_candidate_specs_read_names_options_and_gene_space():
    c = parse_candidate("vae(n_hidden=64,hidden_sizes=[8,8],likelihood=gaussian)+latent-arithmetic")
    assert c.encoder == {"name": "vae", "n_hidden": 64, "hidden_sizes": [8, 8], "likelihood": "gaussian"}
    assert c.manipulator == {"name": "latent-arithmetic"} and c.decoder is None
    ms = parse_candidate("mean-shift")
    assert ms.encoder == {"name": "identity-encoder"} and ms.label == "mean-shift"
    assert split_specs("a,b(x=1,y=[1,2]),c") == ["a", "b(x=1,y=[1,2])", "c"]
    assert len(parse_candidates(None)) >= 3                                   # the default set
    with pytest.raises(ValueError, match="listed twice"):
        parse_candidates(["mean-shift", "mean-shift"])


def test_an_unknown_candidate_lists_the_registered_ones():
    with pytest.raises(ValueError, match=r"Unknown manipulator 'nope'.*Registered manipulators: \[.*latent-arithmetic"):
        parse_candidate("pca+nope")
    with pytest.raises(ValueError, match="is a manipulator, not an encoder"):
        parse_candidate("mean-shift+latent-arithmetic")


def test_fewer_than_three_contexts_say_what_to_do_instead(adata):
    two = adata[adata.obs["cell_type"].isin(["type_0", "type_1"])].copy()
    with pytest.raises(DataError, match=r"needs at least 3 contexts.*found 2.*a priori.*replicate_key"):
        select_pipeline(two, candidates=CHEAP[:2], context_key="cell_type", progress=False)
    with pytest.raises(DataError, match="pass context_key"):
        select_pipeline(adata, candidates=CHEAP[:2], progress=False)


def test_a_missing_fold_column_lists_the_columns(adata):
    with pytest.raises(DataError, match=r"context key 'celltype' is not a column.*'cell_type'"):
        select_pipeline(adata, candidates=CHEAP[:2], context_key="celltype", progress=False)


def test_rank_entries_average_ranks_over_metrics_with_nan_last():
    scores = {"a": {"u": {"up": 0.9, "down": 0.5}}, "b": {"u": {"up": 0.8, "down": 0.1}},
              "c": {"u": {"up": float("nan"), "down": 0.1}}}
    ranks = rank_entries(scores, {"up": +1, "down": -1})
    # up: a 1, b 2, c 3 (NaN last); down: b and c tie at 1.5, a 3
    assert ranks.loc["u"].to_dict() == {"a": 2.0, "b": 1.75, "c": 2.25}


def test_selection_ranks_the_candidates_and_fits_the_winner(adata, selection, tmp_path):
    table = selection.table
    assert set(table["entry"]) == {*CHEAP, "ensemble", *(f"{e}+spread" for e in [*CHEAP, "ensemble"])}
    assert np.round(table["score"], 9).is_monotonic_increasing
    assert set(table.iloc[-2:]["entry"]) == {"control", "control+spread"}    # no change: last on every unit
    assert {"pearson_delta_mean", "edistance_ratio_sd", "r2_mean_top20_mean"} <= set(table.columns)
    report = selection.report
    assert report["winner"] in report["order"] and len(report["folds"]) == 4
    assert all(len(f["units"]) == 1 for f in report["folds"])
    assert report["seconds"]["work_multiplier"] > 1
    pipe = selection.pipeline
    assert pipe.metadata["selection"]["winner"] == report["winner"]
    control = adata[(adata.obs["cell_type"] == "type_0") & (adata.obs["condition"] == "control")]
    predicted = pipe.predict(control, target="stimulated")
    pipe.save(tmp_path / "chosen")
    again = load_selected(tmp_path / "chosen")
    np.testing.assert_allclose(again.predict(control, target="stimulated").X, predicted.X, rtol=1e-6, atol=1e-6)
    assert again.metadata["selection"]["winner"] == report["winner"]


def test_the_pipeline_verb_and_the_ensemble_weights_come_from_inner_cv_only(adata, selection):
    weights = selection.report["ensemble_weights"]
    assert set(weights) == set(CHEAP) and abs(sum(weights.values()) - 1) < 1e-9
    per_fold = selection.report["ensemble_weights_per_fold"]
    assert set(per_fold) == {"type_0", "type_1", "type_2", "type_3"}          # each fitted without its own fold
    pipe = vc.select(adata, candidates=CHEAP[:2], context_key="cell_type", n_top=20,
                     ensemble=False, spread=False, progress=False)
    assert pipe.metadata["selection"]["winner"] == "mean-shift"


def test_stacking_weights_recover_a_known_mixture():
    rng = np.random.default_rng(0)
    deltas, truths = [], []
    for _ in range(4):
        a, b, c = rng.normal(size=(3, 50))
        deltas.append(np.stack([a, b, c], 1))
        truths.append(0.3 * a + 0.7 * b)
    np.testing.assert_allclose(stacking_weights(deltas, truths), [0.3, 0.7, 0.0], atol=1e-4)


def test_an_ensemble_predicts_the_weighted_mean_and_saves_like_a_pipeline(adata, tmp_path):
    train = adata[~((adata.obs["cell_type"] == "type_0") & (adata.obs["condition"] == "stimulated"))].copy()
    members = [vc.PerturbationPipeline(encoder="identity-encoder", manipulator=m).fit(
        train, context_key="cell_type", progress=False) for m in ("control", "mean-shift")]
    ensemble = EnsemblePipeline(members, [0.25, 0.75], ["control", "mean-shift"])
    control = adata[(adata.obs["cell_type"] == "type_0") & (adata.obs["condition"] == "control")]
    out = ensemble.predict(control, target="stimulated", n_samples=5)
    expected = 0.25 * members[0].predict(control, target="stimulated").X + \
        0.75 * members[1].predict(control, target="stimulated").X
    np.testing.assert_allclose(out.X, expected, rtol=1e-5, atol=1e-6)
    assert (out.layers["q05"] <= out.layers["q95"]).all()
    ensemble.save(tmp_path / "ens")
    loaded = EnsemblePipeline.load(tmp_path / "ens")
    np.testing.assert_allclose(loaded.predict(control, target="stimulated").X, out.X, rtol=1e-6)
    spec = json.loads((tmp_path / "ens" / "pipeline.json").read_text())
    spec["weights"] = [0.5, 0.5]
    (tmp_path / "ens" / "pipeline.json").write_text(json.dumps(spec))
    with pytest.raises(Exception, match="hash mismatch"):
        EnsemblePipeline.load(tmp_path / "ens")
    with pytest.raises(ValueError, match="sum to 1"):
        EnsemblePipeline(members, [0.5, 0.6], ["a", "b"])


def test_replicate_folds_score_every_target_of_the_held_out_replicate():
    obs = pd.DataFrame({"condition": ["control"] * 6 + ["g1"] * 6 + ["g2"] * 3,
                        "rep": ["r1", "r2", "r1", "r2", "r1", "r2"] * 2 + ["r1"] * 3})
    folds = replicate_folds(obs, replicate_key="rep", condition_key="condition", control="control", min_cells=3)
    assert [f.name for f in folds] == ["r1", "r2"]
    assert [u.name for u in folds[0].units] == ["r1/g1"]                      # g2 has no cells in r2 to train on
    assert not folds[0].train[obs["rep"].to_numpy() == "r1"].any()
    with pytest.raises(DataError, match="at least 2 replicates"):
        replicate_folds(obs[obs["rep"] == "r1"], replicate_key="rep", condition_key="condition", control="control",
                        min_cells=3)


def test_auto_in_the_benchmark_never_sees_the_held_out_context(adata):
    from virtualcell.evaluate import run_benchmark

    report = run_benchmark(adata, "oos", manipulator="auto", manipulator_kwargs={"candidates": CHEAP[1:]},
                           contexts=["type_0", "type_1"], n_top=20, progress=False, plots=False)
    for held_out, chosen in report["selection"].items():
        assert held_out not in [f["name"] for f in chosen["folds"]]
        assert len(chosen["folds"]) == 3
    assert set(report["results"]["auto"]) == {"type_0", "type_1"}
    with pytest.raises(DataError, match="OOD protocol hides it"):
        fit_auto(adata, "auto", condition_key="condition", control="control", context_key=None)
    with pytest.raises(ValueError, match="Unknown auto option"):
        fit_auto(adata, {"name": "auto", "epochs": 3}, condition_key="condition", control="control",
                 context_key="cell_type")


def test_parallel_workers_give_the_serial_table(adata, selection):
    parallel = select_pipeline(adata, candidates=CHEAP, context_key="cell_type", n_top=20, n_jobs=2, progress=False)
    pd.testing.assert_frame_equal(parallel.table.drop(columns="seconds_fit"),
                                  selection.table.drop(columns="seconds_fit"))


def test_the_command_prints_the_table_and_refuses_too_few_contexts(adata, tmp_path):
    from virtualcell.cli import app

    path = tmp_path / "data.h5ad"
    adata.write_h5ad(path)
    runner = CliRunner()
    result = runner.invoke(app, ["select", "--data", str(path), "--context-key", "cell_type", "--quiet",
                                 "--candidates", "control,mean-shift", "--out", str(tmp_path / "chosen")])
    assert result.exit_code == 0, result.output
    assert "mean-shift" in result.output and "winner" in result.output
    assert (tmp_path / "chosen" / "pipeline.json").exists()
    two = adata[adata.obs["cell_type"].isin(["type_0", "type_1"])].copy()
    two.write_h5ad(tmp_path / "two.h5ad")
    result = runner.invoke(app, ["select", "--data", str(tmp_path / "two.h5ad"), "--context-key", "cell_type",
                                 "--candidates", "mean-shift", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "needs at least 3 contexts" in result.output
    result = runner.invoke(app, ["select", "--data", str(path), "--context-key", "cell_type",
                                 "--candidates", "pca+nope", "--out", str(tmp_path / "y")])
    assert result.exit_code == 2 and "Registered manipulators" in result.output


def test_edistance_ranks_by_its_numerator_when_the_control_distance_is_not_positive():
    # E(C, S) < 0 (no measurable effect): ratio 2 means E(P, S) = -0.2, closer than ratio 0.5 (E = -0.05)
    scores = {"a": {"u": {"edistance_ratio": 2.0, "edistance_control": -0.1}},
              "b": {"u": {"edistance_ratio": 0.5, "edistance_control": -0.1}}}
    assert rank_entries(scores, {"edistance_ratio": -1}).loc["u"].to_dict() == {"a": 1.0, "b": 2.0}


def test_predict_loads_what_select_saved_whichever_kind_won(adata, tmp_path):
    from virtualcell.cli import app
    from virtualcell.registry.errors import ArtifactError

    path = tmp_path / "data.h5ad"
    adata.write_h5ad(path)
    control = adata[adata.obs["condition"] == "control"].copy()
    control.write_h5ad(tmp_path / "control.h5ad")
    runner = CliRunner()
    for name, extra in (("single", ["--no-ensemble", "--no-spread"]), ("combined", [])):
        result = runner.invoke(app, ["select", "--data", str(path), "--context-key", "cell_type", "--quiet",
                                     "--candidates", "control,pca(n_components=3)+latent-arithmetic",
                                     "--out", str(tmp_path / name), *extra])
        assert result.exit_code == 0, result.output
        result = runner.invoke(app, ["predict", "--pipeline", str(tmp_path / name), "--data",
                                     str(tmp_path / "control.h5ad"), "--target", "stimulated",
                                     "--out", str(tmp_path / f"{name}.h5ad")])
        assert result.exit_code == 0, result.output
    # here the combination wins (seeded data), so predict had to read an EnsemblePipeline
    assert json.loads((tmp_path / "combined" / "pipeline.json").read_text())["class"] == "EnsemblePipeline"
    with pytest.raises(ArtifactError, match="load_selected"):       # the plain loader names the one that reads it
        vc.PerturbationPipeline.load(tmp_path / "combined")
