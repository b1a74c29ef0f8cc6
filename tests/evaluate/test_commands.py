"""`virtualcell benchmark oos|ood|pert` through typer's CliRunner, on tiny simulated data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from virtualcell.datasets import simulate_perturbation
from virtualcell.cli.benchmark import benchmark_app
from virtualcell.cli.benchmark_app import parse_list
from virtualcell.cli.options import parse_options
from virtualcell.evaluate.report import write_h5ad

runner = CliRunner()
FAST = ["--encoder-option", "n_components=5", "--n-top", "20", "--quiet", "--no-plots"]


@pytest.fixture(scope="module")
def kang_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "kang_like.h5ad"
    write_h5ad(simulate_perturbation(n_cells_per_group=30, n_genes=40, n_cell_types=3, seed=0), path)
    return path


@pytest.fixture(scope="module")
def screen_path(tmp_path_factory):
    adata = simulate_perturbation(n_cells_per_group=60, n_genes=30, n_cell_types=1, counts=True, seed=1,
                                  conditions=("control", "KO_A", "KO_B"))
    adata.obs["bio_rep"] = pd.Categorical(np.random.default_rng(0).choice(["rep_1", "rep_2", "rep_3"], size=adata.n_obs))
    path = tmp_path_factory.mktemp("data") / "screen.h5ad"
    write_h5ad(adata, path)
    return path


def test_oos_writes_results_and_records_the_command(kang_path, tmp_path):
    out = tmp_path / "oos"
    result = runner.invoke(benchmark_app, ["oos", "--data", str(kang_path), "--out", str(out), "--contexts",
                                           "type_0,type_2", "--seed", "1", *FAST])
    assert result.exit_code == 0, result.output
    assert "mean-shift" in result.output and "2 contexts" in result.output
    saved = json.loads((out / "results.json").read_text())
    assert saved["contexts"] == ["type_0", "type_2"] and saved["seed"] == 1
    assert saved["method"]["components"]["encoder"]["config"] == {"n_components": 5}
    assert saved["dataset"]["sha256"] and saved["dataset"]["path"].endswith("kang_like.h5ad")
    assert saved["command"].startswith("virtualcell benchmark oos --data ")
    assert "--contexts type_0,type_2" in saved["command"] and "--seed 1" in saved["command"]
    assert (out / "results.md").exists() and len(list((out / "predictions").glob("*.h5ad"))) == 2


def test_ood_hides_the_context_and_skips_baselines_on_request(kang_path, tmp_path):
    out = tmp_path / "ood"
    result = runner.invoke(benchmark_app, ["ood", "--data", str(kang_path), "--out", str(out), "--no-baselines",
                                           "--manipulator-option", "balance=false", *FAST])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "results.json").read_text())
    assert saved["protocol"] == "ood" and saved["split"]["method_sees_context"] is False
    assert list(saved["results"]) == ["pca+latent-arithmetic", "noise-ceiling"]
    assert saved["method"]["components"]["manipulator"]["config"] == {"balance": False}


def test_n_samples_adds_interval_calibration(kang_path, tmp_path):
    out = tmp_path / "sampled"
    result = runner.invoke(benchmark_app, ["oos", "--data", str(kang_path), "--out", str(out), "--contexts", "type_1",
                                           "--no-baselines", "--n-samples", "3", *FAST])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "results.json").read_text())
    assert "--n-samples 3" in saved["command"] and saved["metrics"]["n_samples"] == 3
    assert 0.0 <= saved["results"]["pca+latent-arithmetic"]["type_1"]["coverage90"] <= 1.0
    assert "coverage90" in result.output


def test_pert_on_a_screen(screen_path, tmp_path):
    out = tmp_path / "pert"
    result = runner.invoke(benchmark_app, ["pert", "--data", str(screen_path), "--out", str(out), "--min-cells", "5",
                                           *FAST])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "results.json").read_text())
    assert saved["contexts"] == ["KO_A", "KO_B"] and saved["dataset"]["preprocess"] == "log1p"
    assert "2 targets" in result.output and "discrimination" in result.output and "mean-perturbation" in result.output


def test_errors_are_short_and_teach(kang_path, screen_path, tmp_path):
    result = runner.invoke(benchmark_app, ["pert", "--data", str(screen_path), "--out", str(tmp_path / "a"),
                                           "--preprocess", "none", *FAST])
    assert result.exit_code == 2 and "log1p" in result.output and "Traceback" not in result.output
    result = runner.invoke(benchmark_app, ["oos", "--data", str(kang_path), "--out", str(tmp_path / "b"),
                                           "--contexts", "CD4T", *FAST])
    assert result.exit_code == 2 and "type_0" in result.output
    result = runner.invoke(benchmark_app, ["oos", "--data", str(kang_path), "--out", str(tmp_path / "c"),
                                           "--encoder", "no-such-encoder", *FAST])
    assert result.exit_code == 2 and "pca" in result.output
    result = runner.invoke(benchmark_app, ["oos", "--data", str(kang_path), "--out", str(tmp_path / "d"),
                                           "--encoder-option", "n_components", "--quiet"])
    assert result.exit_code != 0 and "KEY=VALUE" in result.output


def test_option_parsing():
    assert parse_options(["n_latent=50", "hidden=[800, 800]", "likelihood=nb", "lr=1e-3", "flag=true"], "--x") == {
        "n_latent": 50, "hidden": [800, 800], "likelihood": "nb", "lr": 1e-3, "flag": True}
    assert parse_options(None, "--x") == {}
    with pytest.raises(typer.BadParameter):
        parse_options(["=3"], "--x")
    assert parse_list("CD4T, B,") == ["CD4T", "B"] and parse_list("") is None


def test_mounted_in_the_main_cli():
    from virtualcell.cli import app

    result = runner.invoke(app, ["benchmark", "--help"])
    assert result.exit_code == 0
    for command in ("oos", "ood", "pert"):
        assert command in result.output
