"""The benchmark runner (virtualcell.evaluate.run_benchmark) on tiny simulated data."""

from __future__ import annotations

import json
import os

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

from virtualcell.data.checks import DataError
from virtualcell.datasets import simulate_perturbation
from virtualcell.evaluate import oos_tasks, pert_tasks, run_benchmark
from virtualcell.evaluate.report import machine_info, markdown_report
from virtualcell.instruments.manipulators.latent_arithmetic import LatentArithmeticManipulator
from virtualcell.pipelines.perturbation import PerturbationPipeline

FAST = {"encoder_kwargs": {"n_components": 5}, "n_top": 20, "progress": False}


@pytest.fixture(scope="module")
def kang_like() -> ad.AnnData:
    """3 cell types x (control, stimulated) x 30 cells, 40 genes, log-expression."""
    return simulate_perturbation(n_cells_per_group=30, n_genes=40, n_cell_types=3, seed=0)


@pytest.fixture(scope="module")
def screen() -> ad.AnnData:
    """A tiny Papalexi-like screen: control + 3 knockouts, 3 replicates and 'ambiguous' cells (raw counts)."""
    adata = simulate_perturbation(n_cells_per_group=60, n_genes=30, n_cell_types=1, counts=True, seed=1,
                                  conditions=("control", "KO_A", "KO_B", "KO_C"))
    rng = np.random.default_rng(0)
    adata.obs["bio_rep"] = pd.Categorical(rng.choice(["rep_1", "rep_2", "rep_3"], size=adata.n_obs))
    condition = adata.obs["condition"].astype(str).to_numpy()
    condition[rng.random(adata.n_obs) < 0.1] = "ambiguous"
    adata.obs["condition"] = pd.Categorical(condition)
    return adata


# -- splits ---------------------------------------------------------------------------------------
def test_oos_tasks_hold_out_exactly_the_stimulated_cells_of_each_context(kang_like):
    obs = kang_like.obs
    tasks = oos_tasks(obs, context_key="cell_type")
    assert [t.name for t in tasks] == ["type_0", "type_1", "type_2"]
    for task in tasks:
        here = (obs["cell_type"] == task.name).to_numpy()
        stim = (obs["condition"] == "stimulated").to_numpy()
        np.testing.assert_array_equal(task.truth, here & stim)
        np.testing.assert_array_equal(task.source, here & ~stim)
        np.testing.assert_array_equal(task.train, ~(here & stim))
        np.testing.assert_array_equal(task.reference, ~here)      # the PCA of the distribution metrics
    assert [t.name for t in oos_tasks(obs, context_key="cell_type", exclude_contexts=["type_1"])] == ["type_0", "type_2"]


def test_oos_tasks_errors_name_the_problem(kang_like):
    with pytest.raises(DataError, match="not values of"):
        oos_tasks(kang_like.obs, context_key="cell_type", contexts=["CD4T"])
    with pytest.raises(DataError, match="available columns"):
        oos_tasks(kang_like.obs, context_key="celltype")
    with pytest.raises(DataError, match="--target"):
        oos_tasks(kang_like.obs, context_key="cell_type", target="IFN")
    with pytest.raises(DataError, match=">= 100"):
        oos_tasks(kang_like.obs, context_key="cell_type", contexts=["type_0"], min_cells=100)


def test_pert_tasks_share_training_cells_and_drop_ambiguous(screen):
    obs = screen.obs
    tasks = pert_tasks(obs, min_cells=5)
    rep = obs["bio_rep"].astype(str).to_numpy()
    condition = obs["condition"].astype(str).to_numpy()
    assert [t.name for t in tasks] == ["KO_A", "KO_B", "KO_C"]
    expected_train = (rep != "rep_3") & (condition != "ambiguous")
    for task in tasks:
        np.testing.assert_array_equal(task.train, expected_train)
        np.testing.assert_array_equal(task.source, (rep == "rep_3") & (condition == "control"))
        np.testing.assert_array_equal(task.truth, (rep == "rep_3") & (condition == task.name))
        np.testing.assert_array_equal(task.reference, expected_train)
    n_a = int(((rep == "rep_3") & (condition == "KO_A")).sum())
    assert [t.name for t in pert_tasks(obs, min_cells=n_a + 1)] == [t.name for t in tasks if t.truth.sum() > n_a]
    with pytest.raises(DataError, match="train_replicates"):
        pert_tasks(obs, train_replicates=["rep_3"])


# -- runner ---------------------------------------------------------------------------------------
def test_outputs_exist_and_parse(kang_like, tmp_path):
    report = run_benchmark(kang_like, "oos", out=tmp_path, **FAST)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["status"] == "complete" and saved["protocol"] == "oos"
    umask = os.umask(0o022)
    os.umask(umask)
    for written in (tmp_path / "results.json", *(tmp_path / "predictions").glob("*.h5ad")):
        assert written.stat().st_mode & 0o777 == 0o666 & ~umask          # not mkstemp's 0o600
    assert saved["contexts"] == ["type_0", "type_1", "type_2"]
    assert set(saved["results"]) == {"pca+latent-arithmetic", "control", "mean-shift", "noise-ceiling"}
    assert saved["method"]["components"]["encoder"] == {"name": "pca", "class": "PCAEncoder", "config": {"n_components": 5}}
    for key in ("dataset", "seed", "means", "machine", "packages", "degs"):
        assert key in saved
    assert saved["machine"]["torch_threads"] == torch.get_num_threads()
    per = saved["results"]["pca+latent-arithmetic"]["type_1"]
    for key in ("r2_mean_all", "r2_mean_top20", "pearson_delta", "pearson_delta_top20", "de_overlap_top20",
                "edistance_ratio", "mmd_ratio", "mean_sqdist_ratio", "std_ratio_top20", "r2_var_top20",
                "seconds_train", "seconds_predict"):
        assert isinstance(per[key], float), key
    assert per["n_source"] == 30 and per["n_truth"] == 30 and per["n_train"] == 150
    assert saved["means"]["control"]["n_contexts"] == 3
    assert saved["results"] == json.loads(json.dumps(report["results"]))
    markdown = (tmp_path / "results.md").read_text()
    assert "| type_2 | mean-shift |" in markdown and "## Mean over contexts" in markdown
    for context in saved["contexts"]:
        predicted = ad.read_h5ad(tmp_path / "predictions" / f"{context}.h5ad")
        assert predicted.shape == (30, kang_like.n_vars)
        assert list(predicted.var_names) == list(kang_like.var_names)
        assert (predicted.obs["condition"] == "stimulated").all()
        assert (tmp_path / "plots" / f"{context}.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "plots" / "summary_pearson_delta.png").exists()
    assert not list(tmp_path.rglob("*.tmp*")), "temporary files left behind"


def test_predictions_reproduce_the_metrics(kang_like, tmp_path):
    """A third party can recompute every metric from the saved predictions."""
    from virtualcell.metrics.perturbation import perturbation_metrics

    saved = run_benchmark(kang_like, "oos", out=tmp_path, contexts=["type_2"], baselines=False, plots=False, **FAST)
    pred = ad.read_h5ad(tmp_path / "predictions" / "type_2.h5ad").X
    here = kang_like.obs["cell_type"] == "type_2"
    stim = kang_like[here & (kang_like.obs["condition"] == "stimulated")].X
    ctrl = kang_like[here & (kang_like.obs["condition"] == "control")].X
    outside = kang_like[~here].X                                    # the PCA reference: the other contexts
    again = perturbation_metrics(pred, stim, ctrl, list(kang_like.var_names), n_top=20, degs=saved["degs"]["type_2"],
                                 reference=outside, seed=0)
    for key, value in again.items():
        assert value == pytest.approx(saved["results"]["pca+latent-arithmetic"]["type_2"][key], abs=1e-5), key


def test_control_baseline_scores_no_change_and_mean_shift_beats_it(kang_like):
    report = run_benchmark(kang_like, "oos", **FAST)
    for context, scores in report["results"]["control"].items():
        assert scores["pearson_delta"] == pytest.approx(0.0, abs=1e-9), context
        assert scores["edistance_ratio"] == pytest.approx(1.0), context
    means = report["means"]
    assert means["mean-shift"]["pearson_delta"] > 0.5
    assert means["mean-shift"]["edistance_ratio"] < 1.0
    assert means["pca+latent-arithmetic"]["r2_mean_all"] > means["control"]["r2_mean_all"]


def _numbers(report):
    return {method: {ctx: {k: v for k, v in m.items() if not k.startswith("seconds")} for ctx, m in per.items()}
            for method, per in report["results"].items()}


def test_same_seed_gives_identical_numbers(kang_like, tmp_path):
    first = run_benchmark(kang_like, "oos", seed=3, out=tmp_path / "a", plots=False, **FAST)
    second = run_benchmark(kang_like, "oos", seed=3, out=tmp_path / "b", plots=False, **FAST)
    assert _numbers(first) == _numbers(second)
    assert first["degs"] == second["degs"]
    for context in first["contexts"]:
        a = ad.read_h5ad(tmp_path / "a" / "predictions" / f"{context}.h5ad").X
        b = ad.read_h5ad(tmp_path / "b" / "predictions" / f"{context}.h5ad").X
        np.testing.assert_array_equal(a, b)


class SpyManipulator(LatentArithmeticManipulator):
    """Latent arithmetic that records the context it is given in fit and in manipulate."""

    seen: list[tuple[str, object]] = []

    def _fit(self, z, labels, **kwargs):
        SpyManipulator.seen.append(("fit", labels.context))
        super()._fit(z, labels, **kwargs)

    def _manipulate(self, z, condition, *, n_samples, generator):
        SpyManipulator.seen.append(("manipulate", condition.context))
        return super()._manipulate(z, condition, n_samples=n_samples, generator=generator)


@pytest.fixture
def spy(monkeypatch):
    """Records every pipeline fit's obs columns and context_key, and the manipulator's contexts."""
    SpyManipulator.seen = []
    fits = []
    original = PerturbationPipeline.fit

    def recording_fit(self, adata, **kwargs):
        fits.append((type(self.manipulator).__name__, list(adata.obs.columns), kwargs.get("context_key")))
        return original(self, adata, **kwargs)

    monkeypatch.setattr(PerturbationPipeline, "fit", recording_fit)
    return fits


def test_ood_never_shows_the_context_column_to_the_method(kang_like, spy):
    report = run_benchmark(kang_like, "ood", manipulator=SpyManipulator(), **FAST)
    assert report["split"]["method_sees_context"] is False
    method_fits = [f for f in spy if f[0] == "SpyManipulator"]
    assert len(method_fits) == 3
    assert all(columns == ["condition"] and key is None for _, columns, key in method_fits)
    assert len(SpyManipulator.seen) == 6 and all(context is None for _, context in SpyManipulator.seen)
    baseline_fits = [f for f in spy if f[0] == "MeanShiftManipulator"]
    assert all(key == "cell_type" for _, _, key in baseline_fits), "baselines are defined over other contexts"


def test_oos_shows_the_context_column_to_the_method(kang_like, spy):
    run_benchmark(kang_like, "oos", manipulator=SpyManipulator(), baselines=False, **FAST)
    assert [key for _, _, key in spy] == ["cell_type"] * 3
    assert all(context is not None for _, context in SpyManipulator.seen)


def test_pert_trains_one_model_for_all_targets(screen, tmp_path, spy):
    report = run_benchmark(screen, "pert", preprocess="log1p", min_cells=5, out=tmp_path, plots=False, **FAST)
    assert report["contexts"] == ["KO_A", "KO_B", "KO_C"]
    assert len(spy) == 4, "one fit per method (method, control, mean-shift, mean-perturbation), shared by every target"
    trained = {report["results"]["pca+latent-arithmetic"][t]["seconds_train"] for t in report["contexts"]}
    assert len(trained) == 1
    assert all("ambiguous" not in str(cols) for cols in spy)
    assert report["means"]["mean-shift"]["pearson_delta"] > report["means"]["control"]["pearson_delta"]
    assert sorted(p.name for p in (tmp_path / "predictions").iterdir()) == ["KO_A.h5ad", "KO_B.h5ad", "KO_C.h5ad"]
    assert set(report["results"]) == {"pca+latent-arithmetic", "control", "mean-shift", "mean-perturbation",
                                      "noise-ceiling"}
    for label, per in report["results"].items():
        assert all(0.0 <= per[t]["discrimination"] <= 1.0 for t in report["contexts"]), label
    # one response for every target: its ranks are a permutation, so the mean is exactly chance
    assert report["means"]["mean-perturbation"]["discrimination"] == pytest.approx(0.5)
    assert report["means"]["control"]["discrimination"] == pytest.approx(0.5)
    assert report["means"]["mean-shift"]["discrimination"] < 0.5


def test_n_samples_reports_interval_calibration_for_the_method(kang_like):
    report = run_benchmark(kang_like, "oos", contexts=["type_0", "type_1"], n_samples=4, **FAST)
    scores = report["results"]["pca+latent-arithmetic"]["type_0"]
    assert 0.0 <= scores["coverage90"] <= 1.0 and scores["interval_width90"] > 0.0
    assert {"coverage90_all", "interval_width90_all", "seconds_samples"} <= set(scores)
    assert "coverage90" not in report["results"]["mean-shift"]["type_0"]
    point = run_benchmark(kang_like, "oos", contexts=["type_0", "type_1"], **FAST)
    assert point["results"]["pca+latent-arithmetic"]["type_0"]["r2_mean_all"] == scores["r2_mean_all"]
    with pytest.raises(ValueError, match="n_samples"):
        run_benchmark(kang_like, "oos", n_samples=0, **FAST)


def test_identical_samples_warn_that_there_is_no_interval(screen):
    # PERT: every target's response was seen in training, so a deterministic manipulator's samples coincide
    with pytest.warns(UserWarning, match="sampled populations are identical"):
        report = run_benchmark(screen, "pert", preprocess="log1p", min_cells=5, n_samples=3, baselines=False, **FAST)
    assert all(v["interval_width90"] == 0 for v in report["results"]["pca+latent-arithmetic"].values())


def test_noise_ceiling_row_is_written_even_without_baselines(kang_like):
    report = run_benchmark(kang_like, "oos", contexts=["type_1"], baselines=False, **FAST)
    ceiling = report["results"]["noise-ceiling"]["type_1"]
    assert ceiling["r2_mean_all"] > report["results"]["pca+latent-arithmetic"]["type_1"]["r2_mean_all"] - 0.2
    assert ceiling["n_truth"] == 30


def test_raw_counts_without_preprocess_is_an_error_that_teaches(screen):
    with pytest.raises(DataError, match="log1p"):
        run_benchmark(screen, "pert", min_cells=5, **FAST)


def test_existing_results_need_overwrite(kang_like, tmp_path):
    run_benchmark(kang_like, "oos", out=tmp_path, contexts=["type_0"], baselines=False, plots=False, **FAST)
    with pytest.raises(FileExistsError, match="overwrite"):
        run_benchmark(kang_like, "oos", out=tmp_path, contexts=["type_0"], **FAST)
    run_benchmark(kang_like, "oos", out=tmp_path, contexts=["type_1"], baselines=False, plots=False, overwrite=True, **FAST)
    assert [p.name for p in (tmp_path / "predictions").iterdir()] == ["type_1.h5ad"]


def test_bad_arguments_are_errors_that_teach(kang_like):
    with pytest.raises(ValueError, match="protocol"):
        run_benchmark(kang_like, "loo", **FAST)
    with pytest.raises(ValueError, match="decoder_kwargs"):
        run_benchmark(kang_like, "oos", decoder_kwargs={"x": 1}, **FAST)
    with pytest.raises(FileNotFoundError, match="h5ad"):
        run_benchmark("/nonexistent/data.h5ad", "oos", **FAST)


def test_markdown_and_machine_info():
    info = machine_info()
    assert info["usable_cores"] >= 1 and info["torch_threads"] >= 1 and isinstance(info["gpus"], list)
    report = {"protocol": "pert", "status": "complete", "seed": 0, "contexts": ["KO"], "command": "virtualcell x",
              "dataset": {"path": "d.h5ad", "sha256": "ab" * 32, "n_cells": 10, "n_genes": 5, "preprocess": "log1p"},
              "method": {"label": "m", "components": {"encoder": {"name": "pca", "config": {}}, "decoder": None}},
              "machine": info, "results": {"m": {"KO": {"r2_mean_all": 0.5, "edistance_ratio": None, "n_truth": 3}}},
              "means": {"m": {"n_contexts": 1, "r2_mean_all": 0.5, "edistance_ratio": None}}}
    text = markdown_report(report)
    assert "| KO | m | 0.500 | – |" in text and "## Mean over targets" in text and "`virtualcell x`" in text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_matches_cpu(kang_like):
    cpu = run_benchmark(kang_like, "oos", contexts=["type_0"], **FAST)
    gpu = run_benchmark(kang_like, "oos", contexts=["type_0"], device="cuda", **FAST)
    for method, per in _numbers(cpu).items():
        for key, value in per["type_0"].items():
            assert _numbers(gpu)[method]["type_0"][key] == pytest.approx(value, abs=1e-3), (method, key)
