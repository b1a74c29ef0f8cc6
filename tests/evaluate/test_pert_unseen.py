"""PERT-unseen: leave one target out, every method and the baselines scored with metrics v2 + discrimination."""

import json

import pytest
from typer.testing import CliRunner

from virtualcell.cli import app
from virtualcell.data.checks import DataError
from virtualcell.data.simulate_screen import simulate_screen
from virtualcell.evaluate.pert_unseen import run_pert_unseen, unseen_target_tasks

FAST = ("identity-encoder", {"name": "gene-network", "epochs": 40, "hidden": 8})


@pytest.fixture(scope="module")
def screen_data():
    adata = simulate_screen(n_genes=30, n_modules=3, n_targets=4, n_control=60, n_per_target=25, seed=5)
    ambiguous = adata[:10].copy()
    ambiguous.obs_names = [f"amb_{i}" for i in range(10)]
    import anndata as ad

    both = ad.concat([adata, ambiguous])
    both.obs["condition"] = list(adata.obs.condition.astype(str)) + ["ambiguous"] * 10
    both.uns = adata.uns
    return both


def test_tasks_hold_out_every_target_with_enough_cells(screen_data):
    tasks = unseen_target_tasks(screen_data.obs, min_cells=20)
    assert [t for t, _ in tasks] == sorted(screen_data.uns["simulate_screen"]["targets"])
    assert all(mask.sum() == 25 for _, mask in tasks)
    with pytest.raises(DataError, match="have no cells"):
        unseen_target_tasks(screen_data.obs, targets=["NOPE", "G01"])
    with pytest.raises(DataError, match="Lower --min-cells"):
        unseen_target_tasks(screen_data.obs, min_cells=1000)


def test_run_scores_methods_and_baselines(screen_data, tmp_path, one_torch_thread):
    report = run_pert_unseen(screen_data, methods={"gene-network": FAST}, preprocess=None, min_cells=20, n_top=10,
                             out=tmp_path / "run", progress=False)
    targets = sorted(screen_data.uns["simulate_screen"]["targets"])
    assert report["common_targets"] == targets
    assert set(report["results"]) == {"gene-network", "mean-perturbation", "nearest-target", "control", "noise-ceiling"}
    for label in ("gene-network", "mean-perturbation", "control"):
        for target in targets:
            row = report["results"][label][target]
            assert 0.0 <= row["discrimination"] <= 1.0 and "edistance_ratio" in row and row["n_truth"] == 25
    assert report["means"]["control"]["pearson_delta"] == 0.0
    assert report["means"]["gene-network"]["pearson_delta"] > 0.3
    assert "scale_chosen" in report["results"]["gene-network"][targets[0]]
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["status"] == "complete" and "ambiguous" not in saved["contexts"]
    assert "| gene-network |" in (tmp_path / "run" / "results.md").read_text()
    with pytest.raises(FileExistsError):
        run_pert_unseen(screen_data, preprocess=None, min_cells=20, out=tmp_path / "run", progress=False)


def test_cli_runs_and_records_refusals(screen_data, tmp_path, one_torch_thread):
    data = tmp_path / "screen.h5ad"
    adata = screen_data.copy()
    adata.uns = {}
    adata.obs.loc[adata.obs.condition == adata.obs.condition.iloc[-30], "condition"] = "UNMEASURED"
    adata.write_h5ad(data)
    result = CliRunner().invoke(app, ["benchmark", "pert-unseen", "--data", str(data), "--out", str(tmp_path / "o"),
                                      "--manipulator-option", "epochs=20", "--min-cells", "20", "--preprocess", "none",
                                      "--n-top", "10", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "gene-network refused 1 target(s): UNMEASURED" in result.output
    report = json.loads((tmp_path / "o" / "results.json").read_text())
    assert "not a gene of the network" in report["refused"]["gene-network"]["UNMEASURED"]
    assert "UNMEASURED" in report["results"]["mean-perturbation"]         # the baseline predicts any target
    assert report["command"].startswith("virtualcell benchmark pert-unseen")
    assert (tmp_path / "o" / "predictions" / "mean-perturbation" / "UNMEASURED.h5ad").exists()


def _with_unmeasured(screen_data, n: int = 25):
    """The screen plus ``n`` cells of a target that is no gene of the data (outside the panel)."""
    import anndata as ad

    extra = screen_data[screen_data.obs.condition.astype(str) == "control"][:n].copy()
    extra.obs_names = [f"unmeasured_{i}" for i in range(n)]
    both = ad.concat([screen_data, extra])
    both.obs["condition"] = list(screen_data.obs.condition.astype(str)) + ["UNMEASURED"] * n
    return both


def test_an_out_of_panel_target_is_refused_before_training(screen_data, monkeypatch, one_torch_thread):
    from virtualcell.pipelines.perturbation import PerturbationPipeline

    fits = []
    original = PerturbationPipeline.fit

    def counting_fit(self, adata, *args, **kwargs):
        fits.append(sorted(set(adata.obs["condition"].astype(str))))
        return original(self, adata, *args, **kwargs)

    monkeypatch.setattr(PerturbationPipeline, "fit", counting_fit)
    targets = sorted(screen_data.uns["simulate_screen"]["targets"])[:2]
    report = run_pert_unseen(_with_unmeasured(screen_data), methods={"gene-network": FAST}, baselines=False,
                             preprocess=None, min_cells=20, n_top=10, targets=[*targets, "UNMEASURED"], progress=False)
    assert "not a gene of the network" in report["refused"]["gene-network"]["UNMEASURED"]
    assert "before training" in report["refused"]["gene-network"]["UNMEASURED"]
    assert len(fits) == 2                                   # one fit per predictable target, none for UNMEASURED
    assert report["common_targets"] == targets


def test_empty_targets_are_refused_not_read_as_all(screen_data, tmp_path):
    with pytest.raises(DataError, match="targets is empty"):
        run_pert_unseen(screen_data, targets=[], preprocess=None, min_cells=20, progress=False)
    data = tmp_path / "screen.h5ad"
    adata = screen_data.copy()
    adata.uns = {}
    adata.write_h5ad(data)
    result = CliRunner().invoke(app, ["benchmark", "pert-unseen", "--data", str(data), "--out", str(tmp_path / "o"),
                                      "--targets", "", "--preprocess", "none", "--quiet"])
    assert result.exit_code == 2, result.output
    assert "--targets" in result.output and "names nothing" in result.output
    assert not (tmp_path / "o" / "results.json").exists()      # nothing was trained


def test_plots_are_written(screen_data, tmp_path, one_torch_thread):
    targets = sorted(screen_data.uns["simulate_screen"]["targets"])[:2]
    run_pert_unseen(screen_data, methods={"gene-network": FAST}, baselines=False, preprocess=None, min_cells=20,
                    n_top=10, targets=targets, out=tmp_path / "run", progress=False)
    plots = tmp_path / "run" / "plots"
    for name in [*targets, "summary_pearson_delta", "summary_discrimination"]:
        assert (plots / f"{name}.png").stat().st_size > 0, name
    run_pert_unseen(screen_data, methods={"gene-network": FAST}, baselines=False, preprocess=None, min_cells=20,
                    n_top=10, targets=targets, out=tmp_path / "quiet", progress=False, plots=False)
    assert not list((tmp_path / "quiet").glob("plots/*.png"))
