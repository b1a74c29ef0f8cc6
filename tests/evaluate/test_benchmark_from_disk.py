"""``benchmark`` and ``select`` from disk: the same numbers as in memory, without ever reading the store whole."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import virtualcell as vc
from virtualcell.datasets import simulate_perturbation
from virtualcell.evaluate import run_benchmark
from virtualcell.pipelines import disk_matrix
from virtualcell.selection import select_pipeline
from virtualcell.train.disk_cells import DiskCells

METRICS = ("r2_mean_all", "r2_mean_top100", "pearson_delta", "edistance_ratio", "mmd_ratio")
METHOD = {"protocol": "oos", "encoder": "pca", "manipulator": "latent-arithmetic",
          "encoder_kwargs": {"n_components": 8}, "plots": False, "progress": False}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """4,800 log-normalised cells (4 types x 2 conditions x 600; CSR h5ad): a training split of ~4,200 cells is
    more than one loader pool (4,096), so every fit from disk trains from shuffled blocks, not read whole."""
    adata = simulate_perturbation(n_cells_per_group=600, n_genes=30, n_cell_types=4, seed=0)
    adata.X = sp.csr_matrix(adata.X.astype(np.float32))
    path = tmp_path_factory.mktemp("bench") / "cells.h5ad"
    adata.write_h5ad(path)
    return adata, path


def _means(report):
    return {label: {m: report["means"][label][m] for m in METRICS} for label in report["means"]}


def test_benchmark_from_disk_matches_memory_and_never_reads_the_store_whole(store, monkeypatch):
    adata, path = store
    memory = run_benchmark(adata, **METHOD)
    biggest = []
    read = DiskCells.read

    def counting_read(self, positions=None):
        biggest.append(self.n_obs if positions is None else len(positions))
        return read(self, positions)

    monkeypatch.setattr(DiskCells, "read", counting_read)
    monkeypatch.setattr(disk_matrix, "PASS_ROWS", 1000)
    disk = run_benchmark(str(path), from_disk=True, **METHOD)
    assert max(biggest) <= 1000, "the harness read more than one pass chunk or one unit at once"
    assert disk["dataset"]["from_disk"] and disk["contexts"] == memory["contexts"]
    for label, means in _means(memory).items():
        for metric, value in means.items():
            # the PCA encoder streamed, the metrics' PCA from a covariance: equal up to float rounding
            assert disk["means"][label][metric] == pytest.approx(value, abs=1e-4), (label, metric)


def test_benchmark_from_disk_applies_a_recipe_through_a_streamed_copy(tmp_path):
    """Counts + a recipe with HVGs: the copy holds the same genes and values as the in-memory recipe, and is
    deleted after the run."""
    adata = simulate_perturbation(n_cells_per_group=40, n_genes=50, n_cell_types=3, counts=True, seed=2)
    adata.X = sp.csr_matrix(adata.X.astype(np.float32))
    path = tmp_path / "counts.h5ad"
    adata.write_h5ad(path)
    recipe = {"normalize_total": 1e4, "log1p": True, "n_top_genes": 20, "hvg_flavor": "seurat"}
    memory = run_benchmark(adata, preprocess=recipe, **METHOD)
    disk = run_benchmark(str(path), preprocess=recipe, from_disk=True, out=tmp_path / "out", **METHOD)
    assert disk["dataset"]["n_genes"] == memory["dataset"]["n_genes"] == 20 and disk["degs"] == memory["degs"]
    for label, means in _means(memory).items():
        for metric, value in means.items():
            assert disk["means"][label][metric] == pytest.approx(value, abs=1e-4), (label, metric)
    assert not list((tmp_path / "out").glob("virtualcell-preprocessed-*")), "the preprocessed copy was left behind"
    options = {"candidates": ["pca(n_components=5)+latent-arithmetic"], "context_key": "cell_type",
               "progress": False, "spread": False, "ensemble": False, "preprocess": recipe}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chosen_memory, chosen_disk = select_pipeline(adata, **options), select_pipeline(str(path), **options)
    assert chosen_disk.report["table"][0]["score"] == pytest.approx(chosen_memory.report["table"][0]["score"], abs=1e-4)
    assert chosen_disk.pipeline.preprocessing.genes == chosen_memory.pipeline.preprocessing.genes


def test_benchmark_from_disk_refuses_what_it_cannot_do(store):
    _, path = store
    with pytest.raises(vc.DataError, match="conformal"):
        run_benchmark(str(path), from_disk=True, conformal=True, **METHOD)
    with pytest.raises(vc.DataError, match="--from-disk"):
        run_benchmark(path.parent, **METHOD)


def test_select_from_disk_chooses_and_scores_as_in_memory(store):
    adata, path = store
    options = {"candidates": ["pca(n_components=8)+latent-arithmetic", "pca(n_components=2)+latent-arithmetic"],
               "context_key": "cell_type", "progress": False, "spread": False, "ensemble": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        memory = select_pipeline(adata, **options)
        disk = select_pipeline(str(path), **options)
    assert disk.report["winner"] == memory.report["winner"]
    for a, b in zip(memory.report["table"], disk.report["table"]):
        assert a["entry"] == b["entry"] and b["score"] == pytest.approx(a["score"], abs=1e-4)
    control = adata[(adata.obs["condition"] == "control").to_numpy()][:50]
    np.testing.assert_allclose(disk.pipeline.predict(control, target="stimulated").X,
                               memory.pipeline.predict(control, target="stimulated").X, atol=1e-4)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "virtualcell", *args], capture_output=True, text=True, timeout=600)


def test_cli_benchmark_and_select_from_disk(store, tmp_path):
    _, path = store
    out = tmp_path / "bench"
    run = _cli("benchmark", "oos", "--data", str(path), "--out", str(out), "--from-disk", "--encoder-option",
               "n_components=8", "--no-plots", "--quiet", "--no-baselines", "--contexts", "type_0")
    assert run.returncode == 0, run.stderr
    report = json.loads((out / "results.json").read_text())
    assert report["dataset"]["from_disk"] and report["contexts"] == ["type_0"]
    refused = _cli("benchmark", "oos", "--data", str(path), "--out", str(tmp_path / "b2"), "--from-disk",
                   "--conformal", "--quiet")
    assert refused.returncode == 2 and "error:" in refused.stderr and "Traceback" not in refused.stderr
    assert "--conformal" in refused.stderr
    chosen = tmp_path / "chosen"
    run = _cli("select", "--data", str(path), "--out", str(chosen), "--context-key", "cell_type", "--from-disk",
               "--candidates", "pca(n_components=8)+latent-arithmetic", "--no-spread", "--quiet")
    assert run.returncode == 0, run.stderr
    assert vc.Pipeline.load(chosen).metadata["training"]["from_disk"]
