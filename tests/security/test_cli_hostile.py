"""The CLI as a hostile user meets it: every user error ends as ``error: ...`` (exit 2), never a traceback,
and no command writes its output over its input.

Each case below ended in a raw traceback (or lost data) before the error boundary of
``virtualcell.cli.errors`` and the path checks of ``virtualcell.cli.common``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from virtualcell.cli import app
from virtualcell.cli.errors import ErrorBoundaryGroup
from virtualcell.datasets import simulate_perturbation
from virtualcell.evaluate.report import atomic_write, write_h5ad
from virtualcell.pipelines import PerturbationPipeline

runner = CliRunner()
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A small dataset, a fitted pipeline, and hostile files beside them."""
    root = tmp_path_factory.mktemp("hostile")
    adata = simulate_perturbation(n_cells_per_group=20, n_genes=30, n_cell_types=3, seed=0)
    data = write_h5ad(adata, root / "sim.h5ad")
    model = root / "model"
    PerturbationPipeline("pca", "latent-arithmetic").fit(adata, context_key="cell_type", progress=False).save(model)
    (root / "empty.h5ad").write_bytes(b"")
    (root / "truncated.h5ad").write_bytes(data.read_bytes()[:4000])
    (root / "table.csv").write_text("gene,a\n1,2\n")
    (root / "folder.h5ad").mkdir()
    (root / "empty_dir").mkdir()
    listed = root / "model_list_json"
    shutil.copytree(model, listed)
    (listed / "pipeline.json").write_text("[1, 2]")
    store = root / "cells.zarr"
    assert runner.invoke(app, ["embed", "--data", str(data), "--encoder", str(model), "--store", str(store)]).exit_code == 0
    return {"root": root, "data": data, "model": model, "store": store, "listed": listed}


def run(args: list[str]):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# (name, arguments with {placeholders}, a piece of the message) -- each ended in a traceback before
CASES = [
    ("fit --data is a folder", ["fit", "--data", "{root}/folder.h5ad", "--out", "{new}"], "is a folder"),
    ("predict --data is a folder", ["predict", "--pipeline", "{model}", "--data", "{root}/folder.h5ad",
                                    "--target", "stimulated", "--out", "{new}.h5ad"], "is a folder"),
    ("fit --data empty file", ["fit", "--data", "{root}/empty.h5ad", "--out", "{new}"], "is empty (0 bytes)"),
    ("fit --data truncated", ["fit", "--data", "{root}/truncated.h5ad", "--out", "{new}"], "could not be read as an .h5ad"),
    ("fit --data is a csv", ["fit", "--data", "{root}/table.csv", "--out", "{new}"], "not an .h5ad file"),
    ("predict pipeline.json holds a list", ["predict", "--pipeline", "{listed}", "--data", "{data}",
                                            "--target", "stimulated", "--out", "{new}.h5ad"], "pipeline.json"),
    ("predict --out is a folder", ["predict", "--pipeline", "{model}", "--data", "{data}", "--target", "stimulated",
                                   "--out", "{root}/empty_dir"], "is a folder"),
    ("predict --out under a file", ["predict", "--pipeline", "{model}", "--data", "{data}", "--target", "stimulated",
                                    "--out", "{root}/table.csv/x.h5ad"], "is a file, not a folder"),
    ("fit --out under a file", ["fit", "--data", "{data}", "--out", "{root}/table.csv/model"], "is a file, not a folder"),
    ("predict --cells matches nothing", ["predict", "--pipeline", "{model}", "--data", "{data}", "--target", "stimulated",
                                         "--cells", "cell_type=neuron", "--out", "{new}.h5ad"], "No cell matches --cells"),
    ("fit --exclude removes every cell", ["fit", "--data", "{data}", "--out", "{new}", "--exclude", "condition=control",
                                          "--exclude", "condition=stimulated"], "No cells left to fit on"),
    ("fit --exclude unknown column", ["fit", "--data", "{data}", "--out", "{new}", "--exclude", "tissue=lung"],
     "obs column 'tissue' not found"),
    ("fit unknown component option", ["fit", "--data", "{data}", "--out", "{new}", "--encoder-option", "bogus=1"],
     "--encoder-option"),
    ("embed --store is a file", ["embed", "--data", "{data}", "--encoder", "{model}", "--store", "{root}/table.csv"],
     "table.csv"),
    ("query --show unknown column", ["query", "--store", "{store}", "--key", "X_virtualcell", "--cells",
                                     "cell_type=type_0", "--show", "tissue"], "'tissue'"),
    ("publish --hub is a file", ["publish", "{model}", "--hub", "{root}/table.csv", "--name", "m", "--version", "1.0.0"],
     "table.csv"),
    ("benchmark --data truncated", ["benchmark", "oos", "--data", "{root}/truncated.h5ad", "--out", "{new}", "--quiet"],
     "could not be opened"),
    ("benchmark unknown component option", ["benchmark", "oos", "--data", "{data}", "--out", "{new}", "--quiet",
                                            "--no-plots", "--no-baselines", "--encoder-option", "bogus=1"],
     "unexpected keyword argument 'bogus'"),
    ("demo --out is a file", ["demo", "--out", "{root}/table.csv"], "is a file"),
]


@pytest.mark.parametrize("name, args, message", CASES, ids=[c[0] for c in CASES])
def test_user_error_is_one_clear_line(files, tmp_path, name, args, message):
    values = {k: str(v) for k, v in files.items()} | {"new": str(tmp_path / "out")}
    result = run([a.format(**values) for a in args])
    assert result.exit_code == 2, result.output
    assert "error: " in result.output and message in result.output, result.output


def test_bad_option_syntax_is_a_usage_error(files, tmp_path):
    for args in (["predict", "--pipeline", files["model"], "--data", files["data"], "--target", "stimulated",
                  "--out", tmp_path / "p.h5ad", "--n-samples", "abc"],
                 ["fit", "--data", files["data"], "--out", tmp_path / "m", "--encoder-option", "n_components"],
                 ["benchmark", "oos", "--data", files["data"], "--out", tmp_path / "b", "--threads", "0"],
                 ["fitt"]):
        result = run(args)
        assert result.exit_code == 2 and "Usage:" in result.output, result.output


@NO_CUDA
@pytest.mark.parametrize("command", ["fit", "predict", "embed", "benchmark"])
def test_cuda_without_a_gpu_says_what_to_pass(files, tmp_path, command):
    args = {"fit": ["fit", "--data", files["data"], "--out", tmp_path / "m"],
            "predict": ["predict", "--pipeline", files["model"], "--data", files["data"], "--target", "stimulated",
                        "--out", tmp_path / "p.h5ad"],
            "embed": ["embed", "--data", files["data"], "--encoder", files["model"], "--store", tmp_path / "s.zarr"],
            "benchmark": ["benchmark", "oos", "--data", files["data"], "--out", tmp_path / "b", "--quiet"]}[command]
    result = run(args + ["--device", "cuda"])
    assert result.exit_code == 2 and "CUDA was requested" in result.output and "--device cpu" in result.output


def test_device_auto_works_for_predict_and_embed(files, tmp_path):
    out = tmp_path / "p.h5ad"
    result = run(["predict", "--pipeline", files["model"], "--data", files["data"], "--target", "stimulated",
                  "--cells", "condition=control", "--out", out, "--device", "auto"])
    assert result.exit_code == 0, result.output
    assert ad.read_h5ad(out).n_obs == 60
    result = run(["embed", "--data", files["data"], "--encoder", files["model"], "--store", tmp_path / "s.zarr",
                  "--device", "auto"])
    assert result.exit_code == 0, result.output


# -- never over the input ----------------------------------------------------------------------------
def test_predict_refuses_to_write_over_its_input(files, tmp_path):
    data = tmp_path / "d.h5ad"
    shutil.copy(files["data"], data)
    before = sha256(data)
    link = tmp_path / "link.h5ad"
    link.symlink_to(data)
    for out in (data, link, tmp_path / "." / "d.h5ad"):
        result = run(["predict", "--pipeline", files["model"], "--data", data, "--target", "stimulated",
                      "--out", out, "--overwrite"])
        assert result.exit_code == 2 and "never writes over its input" in result.output, result.output
    assert sha256(data) == before
    result = run(["predict", "--pipeline", files["model"], "--data", data, "--target", "stimulated",
                  "--out", files["model"] / "predicted.h5ad"])
    assert result.exit_code == 2 and "inside the input folder" in result.output


def test_fit_refuses_to_replace_a_folder_holding_its_input(files, tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    data = folder / "d.h5ad"
    shutil.copy(files["data"], data)
    for out in (data, folder):
        result = run(["fit", "--data", data, "--out", out, "--overwrite"])
        assert result.exit_code == 2 and "input" in result.output, result.output
    assert data.exists() and sha256(data) == sha256(files["data"])


def test_embed_and_benchmark_refuse_their_input_as_output(files, tmp_path):
    data = tmp_path / "d.h5ad"
    shutil.copy(files["data"], data)
    result = run(["embed", "--data", data, "--encoder", files["model"], "--store", data])
    assert result.exit_code == 2 and "never writes over its input" in result.output
    result = run(["benchmark", "oos", "--data", data, "--out", data, "--quiet"])
    assert result.exit_code == 2 and "never writes over its input" in result.output
    assert sha256(data) == sha256(files["data"])


def test_existing_outputs_need_overwrite(files, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(files["model"], model)
    listing = sorted(p.name for p in model.iterdir())
    result = run(["fit", "--data", files["data"], "--out", model])
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert sorted(p.name for p in model.iterdir()) == listing
    out = tmp_path / "p.h5ad"
    out.write_text("keep me")
    args = ["predict", "--pipeline", files["model"], "--data", files["data"], "--target", "stimulated", "--out", out,
            "--cells", "condition=control"]
    assert run(args).exit_code == 2 and out.read_text() == "keep me"
    assert run(args + ["--overwrite"]).exit_code == 0 and ad.read_h5ad(out).n_obs == 60
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "no temporary files left behind"


def test_outputs_are_written_atomically(tmp_path):
    """A writer that dies half-way leaves the old file whole and no temporary file behind."""
    out = tmp_path / "out.h5ad"
    out.write_text("old")

    def dies(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        atomic_write(out, dies)
    assert out.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.h5ad"]


# -- the boundary itself -----------------------------------------------------------------------------
def _boundary_app(error: BaseException) -> typer.Typer:
    """An app with the CLI's error boundary and one command that raises ``error``."""
    test_app = typer.Typer(cls=ErrorBoundaryGroup, add_completion=False)

    @test_app.callback()
    def _root(debug: bool = typer.Option(False, "--debug")) -> None:
        pass

    @test_app.command()
    def boom() -> None:
        raise error

    return test_app


def test_unexpected_error_is_reported_as_a_bug(monkeypatch):
    monkeypatch.delenv("VIRTUALCELL_DEBUG", raising=False)
    result = runner.invoke(_boundary_app(ZeroDivisionError("division by zero")), ["boom"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "bug in virtualcell" in result.output and "--debug" in result.output
    result = runner.invoke(_boundary_app(ZeroDivisionError("division by zero")), ["--debug", "boom"])
    assert "Traceback" in result.output and "ZeroDivisionError" in result.output
    monkeypatch.setenv("VIRTUALCELL_DEBUG", "1")
    result = runner.invoke(_boundary_app(KeyError("gene_7")), ["boom"])
    assert result.exit_code == 2 and "Traceback" in result.output and "'gene_7' not found" in result.output


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "virtualcell.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "VIRTUALCELL_PROGRESS": "0", **(env or {})}, timeout=120)


def test_console_entry_point_exit_codes_and_debug(files):
    """The real process: exit 2 and a last line ``error: ...``; --debug after the command adds the traceback
    (without it the same error is one line: ``tests/test_cli.py::test_main_accepts_debug_anywhere``)."""
    args = ["fit", "--data", files["root"] / "folder.h5ad", "--out", files["root"] / "never"]
    debug = _cli(*args, "--debug")
    assert debug.returncode == 2 and "Traceback" in debug.stderr and "IsADirectoryError" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1].startswith("error: --data") and "is a folder" in debug.stderr
    assert not (files["root"] / "never").exists()


def test_s3_url_without_s3fs_names_the_extra(files, tmp_path):
    code = ("import sys; sys.modules['s3fs'] = None\n"       # as on a machine without s3fs
            "from virtualcell.cli import main\n"
            f"main(['publish', {str(files['model'])!r}, '--hub', 's3://bucket/hub', '--name', 'm', '--version', '1.0.0'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert 'pip install "virtualcell[s3]"' in done.stderr


def test_s3_without_credentials_is_a_clear_error(files, tmp_path):
    pytest.importorskip("s3fs")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | {
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}   # nothing is contacted
    done = subprocess.run([sys.executable, "-m", "virtualcell.cli", "publish", str(files["model"]), "--hub",
                           "s3://bucket/hub", "--name", "m", "--version", "1.0.0"],
                          capture_output=True, text=True, timeout=120, env=clean)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("error: ") and ("credentials" in done.stderr or "S3" in done.stderr), done.stderr


def test_no_user_error_path_leaves_partial_outputs(files, tmp_path):
    """Refused commands create nothing: no output folder, no temporary file."""
    run(["fit", "--data", files["root"] / "truncated.h5ad", "--out", tmp_path / "m"])
    run(["predict", "--pipeline", files["listed"], "--data", files["data"], "--target", "stimulated",
         "--out", tmp_path / "p.h5ad"])
    assert list(tmp_path.iterdir()) == []


def test_json_outputs_unchanged_by_refusals(files):
    """The fitted pipeline used as an input above is intact (its record still loads)."""
    spec = json.loads((files["model"] / "pipeline.json").read_text())
    assert spec["class"] == "PerturbationPipeline"
    assert np.isfinite(PerturbationPipeline.load(files["model"]).predict(
        ad.read_h5ad(files["data"])[:5], target="stimulated").X).all()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions")
def test_unwritable_output_folder_is_a_clear_error(files, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = run(["predict", "--pipeline", files["model"], "--data", files["data"], "--target", "stimulated",
                      "--out", locked / "p.h5ad"])
    finally:
        locked.chmod(0o700)
    assert result.exit_code == 2 and "permission denied" in result.output and not (locked / "p.h5ad").exists()


def test_explain_names_the_path_and_the_fix():
    from virtualcell.cli.errors import explain, is_user_error

    assert explain(PermissionError(13, "Permission denied", "/data/x.h5ad")).startswith(
        "Permission denied: /data/x.h5ad; permission denied; choose a path")
    assert "free space" in explain(OSError(28, "No space left on device", "/out"))
    assert explain(OSError("Unable to synchronously open file (truncated file: eof = 5)")).startswith(
        "an HDF5 (.h5ad) input could not be opened")
    assert 'pip install "virtualcell[s3]"' in explain(ImportError("Install s3fs to access S3"))
    assert explain(KeyError("gene_7")) == "'gene_7' not found (no such name, key or column)"
    assert is_user_error(AssertionError("Torch not compiled with CUDA enabled"))
    assert not is_user_error(ZeroDivisionError()) and not is_user_error(AttributeError("x"))


@pytest.mark.parametrize("manifest", ["", "[]", "{}", "{bad"])
def test_pull_of_an_empty_or_malformed_manifest_is_a_clear_error(files, tmp_path, manifest):
    hub = tmp_path / "hub"
    assert run(["publish", files["model"], "--hub", hub, "--name", "m", "--version", "1.0.0"]).exit_code == 0
    [written] = list((hub / "m").glob("*.json"))
    written.write_text(manifest)
    result = run(["pull", "m", "--hub", hub, "--cache-dir", tmp_path / "cache"])
    assert result.exit_code == 2 and "error: " in result.output and "manifest" in result.output, result.output


def test_fit_overwrite_never_deletes_a_folder_of_user_files(files, tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    result = run(["fit", "--data", files["data"], "--out", folder, "--overwrite"])
    assert result.exit_code == 2 and "without pipeline.json" in result.output
    assert (folder / "notes.txt").read_text() == "mine"
    model = tmp_path / "model"
    shutil.copytree(files["model"], model)
    assert run(["fit", "--data", files["data"], "--out", model, "--overwrite"]).exit_code == 0
