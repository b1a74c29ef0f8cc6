"""Every command that writes refuses an existing output unless ``--overwrite`` (issue 21, item 18).

Before: ``virtualcell domains --out existing.h5ad`` and ``--plot existing.png`` (and ``--save-encoder``)
replaced the user's files without a word, and ``domains`` had no ``--overwrite`` at all.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from virtualcell.cli import app
from virtualcell.data.simulate_spatial import simulate_spatial
from virtualcell.datasets import simulate_perturbation
from virtualcell.evaluate.report import write_h5ad

runner = CliRunner()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("outputs")
    data = write_h5ad(simulate_perturbation(n_cells_per_group=20, n_genes=30, n_cell_types=3, seed=0), root / "sim.h5ad")
    slide = write_h5ad(simulate_spatial(60, 12, n_domains=2, seed=0), root / "slide.h5ad")
    return {"data": data, "slide": slide}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refused(args: list, kept: Path) -> None:
    before = _digest(kept) if kept.is_file() else sorted(p.name for p in kept.iterdir())
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    assert "already exists" in result.output and "--overwrite" in result.output, result.output
    after = _digest(kept) if kept.is_file() else sorted(p.name for p in kept.iterdir())
    assert after == before, f"{kept} was changed"


def _existing(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(b"the user's own file")
    return path


def test_domains_refuses_an_existing_out(inputs, tmp_path):
    out = _existing(tmp_path, "existing.h5ad")
    _refused(["domains", "--data", inputs["slide"], "--n-domains", "2", "--method", "pca", "--out", out], out)


def test_domains_refuses_an_existing_plot(inputs, tmp_path):
    plot = _existing(tmp_path, "existing.png")
    _refused(["domains", "--data", inputs["slide"], "--n-domains", "2", "--method", "pca",
              "--out", tmp_path / "new.h5ad", "--plot", plot], plot)
    assert not (tmp_path / "new.h5ad").exists(), "nothing is written when one output is refused"


def test_domains_refuses_an_existing_encoder_folder(inputs, tmp_path):
    folder = tmp_path / "encoder"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    _refused(["domains", "--data", inputs["slide"], "--n-domains", "2", "--out", tmp_path / "new.h5ad",
              "--save-encoder", folder], folder)


def test_domains_overwrite_replaces_out_and_plot(inputs, tmp_path):
    out, plot = _existing(tmp_path, "existing.h5ad"), _existing(tmp_path, "existing.png")
    result = runner.invoke(app, ["domains", "--data", str(inputs["slide"]), "--n-domains", "2", "--method", "pca",
                                 "--out", str(out), "--plot", str(plot), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n" and plot.read_bytes()[:4] == b"\x89PNG"


def test_annotate_refuses_an_existing_out(inputs, tmp_path):
    out = _existing(tmp_path, "labelled.h5ad")
    _refused(["annotate", "--query", inputs["data"], "--reference", inputs["data"], "--label-key", "cell_type",
              "--out", out], out)


def test_benchmark_represent_refuses_an_existing_out(inputs, tmp_path):
    out = _existing(tmp_path, "report.json")
    _refused(["benchmark", "represent", "--data", inputs["data"], "--out", out, "--encoders", "pca"], out)


def test_fit_refuses_an_existing_plot(inputs, tmp_path):
    plot = _existing(tmp_path, "history.png")
    _refused(["fit", "--data", inputs["data"], "--out", tmp_path / "model", "--encoder", "vae", "--plot", plot], plot)
    assert not (tmp_path / "model").exists()


def test_demo_never_replaces_a_folder_of_user_files(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["demo", "--out", str(folder)])
    assert result.exit_code == 2 and "notes.txt" in result.output, result.output
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
