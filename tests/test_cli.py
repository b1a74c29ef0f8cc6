"""The `virtualcell` command line: demo, fit, predict, info, and errors that teach."""

import json

import anndata as ad
import pytest
from typer.testing import CliRunner

from virtualcell.cli import app, main
from virtualcell.datasets import simulate_perturbation
from virtualcell.evaluate.report import write_h5ad

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "fit", "predict", "info"):
        assert command in result.output


def test_help_shows_the_debug_option():
    result = runner.invoke(app, ["--help"])
    assert "--debug" in result.output and "VIRTUALCELL_DEBUG" in result.output


def test_main_accepts_debug_anywhere(tmp_path, capsys, monkeypatch):
    """One line and exit 2 for a user error; --debug (also after the command) adds the traceback."""
    monkeypatch.delenv("VIRTUALCELL_DEBUG", raising=False)
    args = ["fit", "--data", str(tmp_path / "nope.h5ad"), "--out", str(tmp_path / "m")]
    with pytest.raises(SystemExit) as exited:
        main(args)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.startswith("error: --data") and "Traceback" not in err
    with pytest.raises(SystemExit) as exited:
        main(args + ["--debug"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "Traceback" in err and "FileNotFoundError" in err
    assert not (tmp_path / "m").exists()


def test_info_lists_registered_components():
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    for name in ("pca", "latent-arithmetic", "mean-shift", "identity-encoder"):
        assert name in result.output


def test_demo_writes_metrics_plot_and_pipeline(tmp_path):
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--n-genes", "60", "--n-cell-types", "3"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())["results"]
    assert metrics["pca + latent-arithmetic"]["pearson_delta"] > metrics["control"]["pearson_delta"]
    for name in ("mean_scatter.png", "metrics.png", "metrics.md", "pipeline/pipeline.json"):
        assert (tmp_path / "demo" / name).exists()


def test_demo_rejects_unknown_cell_type(tmp_path):
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--held-out", "neuron"])
    assert result.exit_code == 2 and "is not a simulated cell type" in result.output


@pytest.fixture
def h5ad(tmp_path):
    path = tmp_path / "sim.h5ad"
    write_h5ad(simulate_perturbation(n_cells_per_group=40, n_genes=30, n_cell_types=3, seed=0), path)
    return path


def test_fit_then_predict(tmp_path, h5ad):
    model = tmp_path / "model"
    result = runner.invoke(app, ["fit", "--data", str(h5ad), "--out", str(model), "--context-key", "cell_type",
                                 "--encoder-option", "n_components=10",
                                 "--exclude", "cell_type=type_0&condition=stimulated"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "pred.h5ad"
    result = runner.invoke(app, ["predict", "--pipeline", str(model), "--data", str(h5ad), "--target", "stimulated",
                                 "--cells", "cell_type=type_0&condition=control", "--out", str(out)])
    assert result.exit_code == 0, result.output
    predicted = ad.read_h5ad(out)
    assert predicted.n_obs == 40 and (predicted.obs["condition"] == "stimulated").all()
    again = ["predict", "--pipeline", str(model), "--data", str(h5ad), "--target", "stimulated", "--out", str(out)]
    result = runner.invoke(app, again)
    assert result.exit_code == 2 and "--overwrite" in result.output, "an existing output is kept"
    assert runner.invoke(app, again + ["--overwrite", "--device", "auto"]).exit_code == 0
    assert ad.read_h5ad(out).n_obs == 240
    result = runner.invoke(app, ["fit", "--data", str(h5ad), "--out", str(model), "--context-key", "cell_type"])
    assert result.exit_code == 2 and "already exists" in result.output


def test_fit_errors_are_clear(tmp_path, h5ad):
    result = runner.invoke(app, ["fit", "--data", str(h5ad), "--out", str(tmp_path / "m"), "--condition-key", "drug"])
    assert result.exit_code == 2 and "condition key 'drug' is not a column" in result.output
    result = runner.invoke(app, ["fit", "--data", str(h5ad), "--out", str(tmp_path / "m"), "--manipulator", "scgen"])
    assert result.exit_code == 2 and "No component named 'scgen'" in result.output
    result = runner.invoke(app, ["fit", "--data", str(tmp_path / "nope.h5ad"), "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_embed_query_publish_pull(tmp_path, h5ad):
    model = tmp_path / "model"
    assert runner.invoke(app, ["fit", "--data", str(h5ad), "--out", str(model), "--context-key", "cell_type"]).exit_code == 0
    store = tmp_path / "cells.zarr"
    result = runner.invoke(app, ["embed", "--data", str(h5ad), "--encoder", str(model), "--store", str(store), "--key", "pca"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["query", "--store", str(store), "--key", "pca", "--cells", "cell_type=type_1", "--k", "5"])
    assert result.exit_code == 0, result.output
    assert "cell_type: type_1" in result.output, "neighbours of type_1 cells are mostly type_1"
    hub = tmp_path / "hub"
    result = runner.invoke(app, ["publish", str(model), "--hub", str(hub), "--name", "sim-model", "--version", "0.1.0"])
    assert result.exit_code == 0, result.output
    again = runner.invoke(app, ["publish", str(model), "--hub", str(hub), "--name", "sim-model", "--version", "0.1.0"])
    assert again.exit_code == 2 and "immutable" in again.output
    result = runner.invoke(app, ["pull", "sim-model", "--hub", str(hub), "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0 and (tmp_path / "cache" / "instruments" / "sim-model").exists()
