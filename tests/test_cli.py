"""The `virtualcell` command line: demo, fit, predict, info, and errors that teach."""

import json
import re

import anndata as ad
import numpy as np
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
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--n-genes", "60", "--n-cell-types", "4"])
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
    again = ["predict", "--pipeline", str(model), "--data", str(h5ad), "--target", "stimulated", "--out", str(out),
             "--cells", "condition=control"]
    result = runner.invoke(app, again)
    assert result.exit_code == 2 and "--overwrite" in result.output, "an existing output is kept"
    assert runner.invoke(app, again + ["--overwrite", "--device", "auto"]).exit_code == 0
    assert ad.read_h5ad(out).n_obs == 120
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


# -- issue 21: the training split is checked (item 2) and recorded (item 17); --context-key (item 5) -----------
@pytest.mark.parametrize("rule, message", [
    ("cell_type=CD4&condition=stimulated", "no cell has cell_type='CD4'; the values of 'cell_type' are ['type_0'"),
    ("cell_type==type_0", "is not key=value (one '='"),
    ("cell_type=type_0&condition=nope", "the values of 'condition' are ['control', 'stimulated']"),
])
def test_fit_refuses_an_exclude_rule_that_matches_nothing(tmp_path, h5ad, rule, message):
    """Before: a typo in --exclude removed no cell, so the held-out response leaked into training."""
    result = runner.invoke(app, ["fit", "--data", str(h5ad), "--out", str(tmp_path / "m"), "--exclude", rule])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "m").exists()


def test_fit_warns_when_exclude_holds_out_a_context_without_context_key(tmp_path, h5ad):
    args = ["fit", "--data", str(h5ad), "--exclude", "cell_type=type_0&condition=stimulated"]
    result = runner.invoke(app, args + ["--out", str(tmp_path / "a")])
    assert result.exit_code == 0 and "warning:" in result.output and "--context-key cell_type" in result.output
    assert result.output.count("--context-key cell_type") == 1, "one warning, not the API's as well"
    result = runner.invoke(app, args + ["--out", str(tmp_path / "b"), "--context-key", "cell_type"])
    assert result.exit_code == 0 and "--context-key" not in result.output


def test_model_card_records_the_training_split(tmp_path, h5ad):
    model = tmp_path / "model"
    result = runner.invoke(app, ["fit", "--data", str(h5ad), "--out", str(model), "--context-key", "cell_type",
                                 "--exclude", "cell_type=type_0&condition=stimulated"])
    assert result.exit_code == 0, result.output
    for card in (model / "README.md", model / "encoder" / "README.md"):
        text = card.read_text()
        assert "## Training split" in text and "sim.h5ad" in text, card
        assert "Held out of training (never seen in fit): cell_type=type_0, condition=stimulated." in text
    from virtualcell.registry.model_card import parse_front_matter

    front = parse_front_matter((model / "encoder" / "README.md").read_text())
    assert front["training_split"]["exclude"] == ["cell_type=type_0&condition=stimulated"]
    assert front["training_split"]["n_cells_fitted"] == 200 and front["training_split"]["context_key"] == "cell_type"


def test_model_card_renders_the_selection_table():
    from virtualcell.registry.model_card import render_card_sections

    text = render_card_sections({"selection": [{"candidate": "pca+latent-arithmetic", "score": 0.91234},
                                               {"candidate": "mean-shift", "score": 0.8}]})
    assert "## Selection" in text and "| candidate | score |" in text and "| pca+latent-arithmetic | 0.9123 |" in text


# -- issue 21 item 8: every component's options, --epochs --------------------------------------------------
def test_info_name_lists_the_options():
    result = runner.invoke(app, ["info", "vae"])
    assert result.exit_code == 0, result.output
    for piece in ("max_epochs", "n_latent", "int", "40", "--encoder-option", "network shape"):
        assert piece in result.output, piece
    result = runner.invoke(app, ["info", "latent-arithmetic"])
    assert result.exit_code == 0 and "balance" in result.output and "True" in result.output
    result = runner.invoke(app, ["info", "no-such-thing"])
    assert result.exit_code == 2 and "No component named" in result.output


def test_component_options_come_from_the_signature_and_docstring():
    from virtualcell.cli.info import component_options

    rows = {row["name"]: row for row in component_options("vae")}
    assert rows["max_epochs"]["type"] == "int" and rows["max_epochs"]["default"] == "40"
    assert rows["kl_weight"]["doc"].startswith("weight of the KL term")


def test_fit_epochs_sets_the_trained_components_epoch_option(tmp_path, h5ad):
    model = tmp_path / "model"
    result = runner.invoke(app, ["fit", "--data", str(h5ad), "--out", str(model), "--encoder", "vae", "--epochs", "2",
                                 "--encoder-option", "n_hidden=8", "--encoder-option", "n_latent=3"])
    assert result.exit_code == 0, result.output
    assert json.loads((model / "encoder" / "config.json").read_text())["init"]["max_epochs"] == 2
    result = runner.invoke(app, ["fit", "--data", str(h5ad), "--out", str(tmp_path / "m"), "--epochs", "2"])
    assert result.exit_code == 2 and "none of ['pca', 'latent-arithmetic'] trains for epochs" in result.output


def test_unknown_option_points_to_info_name(tmp_path, h5ad):
    result = runner.invoke(app, ["fit", "--data", str(h5ad), "--out", str(tmp_path / "m"), "--encoder-option", "n_comp=5"])
    assert result.exit_code == 2, result.output
    assert "Did you mean 'n_components'?" in result.output and "virtualcell info pca" in result.output


# -- issue 21 item 9: fit --plot ----------------------------------------------------------------------------
def test_fit_plot_needs_a_trained_component(tmp_path, h5ad):
    result = runner.invoke(app, ["fit", "--data", str(h5ad), "--out", str(tmp_path / "m"), "--plot", str(tmp_path / "h.png")])
    assert result.exit_code == 2 and "--plot draws the losses of a component trained for epochs" in result.output
    assert not (tmp_path / "m").exists()


def test_fit_plot_draws_the_training_history(tmp_path, h5ad):
    plot = tmp_path / "history.png"
    result = runner.invoke(app, ["fit", "--data", str(h5ad), "--out", str(tmp_path / "m"), "--encoder", "vae",
                                 "--epochs", "2", "--encoder-option", "n_hidden=8", "--encoder-option", "n_latent=3",
                                 "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert "plotted the training history of the encoder" in result.output, result.output
    assert plot.read_bytes()[:4] == b"\x89PNG"
    result = runner.invoke(app, ["fit", "--data", str(h5ad), "--out", str(tmp_path / "n"), "--encoder", "vae",
                                 "--plot", str(tmp_path / "history.pdf")])
    assert result.exit_code == 2 and "ending in .png" in result.output


# -- issue 21 item 12: errors name the CLI's options, not Python arguments --------------------------------
def test_errors_name_cli_options_not_python_arguments(tmp_path):
    counts = simulate_perturbation(n_cells_per_group=20, n_genes=30, n_cell_types=2, seed=0)
    counts.X = np.random.default_rng(0).poisson(3.0, size=counts.shape).astype(np.float32)
    path = write_h5ad(counts, tmp_path / "counts.h5ad")
    result = runner.invoke(app, ["fit", "--data", str(path), "--out", str(tmp_path / "m"), "--preprocess", "none"])
    assert result.exit_code == 2 and "--preprocess log1p" in result.output, result.output
    assert "preprocess='" not in result.output
    result = runner.invoke(app, ["fit", "--data", str(path), "--out", str(tmp_path / "m"), "--layer", "counts"])
    assert result.exit_code == 2 and "layer=None" not in result.output and "--layer" in result.output, result.output


def test_cli_terms_rewrites_only_the_commands_options():
    from virtualcell.cli.errors import cli_terms

    options = {"layer": "--layer", "preprocess": "--preprocess"}
    assert cli_terms("pass the counts layer (layer='counts') or preprocess=None", options) == \
        "pass the counts layer (--layer counts) or --preprocess none"
    assert cli_terms("(PerturbationPipeline(preprocess='counts') on counts)", options) == "(--preprocess counts on counts)"
    assert cli_terms("likelihood='nb' and --encoder-option layer=1", options) == "likelihood='nb' and --encoder-option layer=1"
    assert cli_terms("Pass context_key='b' (CLI: --context-key b).", {"context_key": "--context-key"}) == \
        "Pass --context-key b."


# -- issue 21 item 14 / issue 20: one option grammar ---------------------------------------------------------
def test_one_option_parser_everywhere():
    import virtualcell.cli.annotate as annotate
    import virtualcell.cli.common as common
    import virtualcell.cli.core as core
    import virtualcell.cli.represent as represent
    import virtualcell.cli.spatial as spatial
    from virtualcell.cli.options import parse_options

    for module in (annotate, common, core, represent, spatial):
        assert module.parse_options is parse_options, module.__name__
    assert parse_options(["n_latent=50", "hidden=[8, 8]", "likelihood=nb", "flag=true"], "--x") == {
        "n_latent": 50, "hidden": [8, 8], "likelihood": "nb", "flag": True}


def test_per_component_options_use_the_same_grammar():
    import typer

    from virtualcell.cli.options import parse_component_options

    assert parse_component_options(["vae.n_latent=50", "seed=1"], ["pca", "vae"]) == {
        "pca": {"seed": 1}, "vae": {"n_latent": 50, "seed": 1}}
    with pytest.raises(typer.BadParameter, match="not one of the listed components"):
        parse_component_options(["scvi.n_latent=5"], ["pca", "vae"])


def test_fit_takes_decoder_options_and_refuses_a_prefixed_key(tmp_path, h5ad):
    model = tmp_path / "model"
    result = runner.invoke(app, ["fit", "--data", str(h5ad), "--out", str(model), "--decoder", "mlp-decoder",
                                 "--decoder-option", "max_epochs=1", "--decoder-option", "n_hidden=8"])
    assert result.exit_code == 0, result.output
    assert json.loads((model / "decoder" / "config.json").read_text())["init"]["max_epochs"] == 1
    result = runner.invoke(app, ["fit", "--data", str(h5ad), "--out", str(tmp_path / "m"),
                                 "--encoder-option", "pca.n_components=5"])
    assert result.exit_code == 2 and "NAME.KEY=VALUE is only for" in re.sub(r"[\s│]+", " ", result.output)
    result = runner.invoke(app, ["fit", "--data", str(h5ad), "--out", str(tmp_path / "m"), "--decoder-option", "x=1"])
    assert result.exit_code == 2 and "--decoder-option needs --decoder" in result.output


def _cli(*args: str, cwd=None):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "virtualcell.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={**__import__("os").environ, "VIRTUALCELL_PROGRESS": "0"})


def test_a_legacy_h5ad_layout_reads_without_anndata_future_warnings(tmp_path):
    """Kang's scGen file (uns['neighbors'] with matrices) made every command print two anndata FutureWarnings."""
    import h5py
    import scipy.sparse as sp
    from anndata.io import write_elem

    adata = simulate_perturbation(n_cells_per_group=10, n_genes=20, n_cell_types=2, seed=0)
    path = tmp_path / "legacy.h5ad"
    adata.write_h5ad(path)
    with h5py.File(path, "r+") as f:
        write_elem(f["uns"], "neighbors", {"distances": sp.csr_matrix((adata.n_obs, adata.n_obs))})
    with pytest.warns(FutureWarning, match="Moving element"):   # what anndata says on its own
        ad.read_h5ad(path)
    result = _cli("fit", "--data", str(path), "--out", str(tmp_path / "m"), "--exclude", "cell_type=NOPE")
    assert result.returncode == 2 and "error: --exclude" in result.stderr
    assert "Moving element" not in result.stderr and "FutureWarning" not in result.stderr, result.stderr


def test_warnings_print_as_warning_lines_without_source_code(tmp_path):
    """A warning raised while a command ran printed as a Python warning (file path, line, source line)."""
    adata = simulate_perturbation(n_cells_per_group=20, n_genes=30, n_cell_types=3, seed=0)
    data = tmp_path / "cells.h5ad"
    adata.write_h5ad(data)
    assert _cli("fit", "--data", str(data), "--out", str(tmp_path / "m"), "--encoder", "pca",
                "--manipulator", "mean-shift", "--context-key", "cell_type").returncode == 0
    result = _cli("screen", "--pipeline", str(tmp_path / "m"), "--data", str(data), "--targets", "stimulated",
                  "--out", str(tmp_path / "r.tsv"))                  # no --cells: stimulated cells are left out
    assert result.returncode == 0, result.stderr
    assert re.search(r"^warning: screen uses the 60 'control' cells", result.stderr, re.M), result.stderr
    assert "UserWarning" not in result.stderr and ".py:" not in result.stderr
