"""`virtualcell fit --from-disk` and `--nproc N` as a user runs them (the CLI as a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "VIRTUALCELL_PROGRESS": "0"}
VAE = ["--encoder", "vae", "--encoder-option", "n_hidden=16", "--encoder-option", "n_latent=4",
       "--encoder-option", "batch_size=64", "--epochs", "1", "--context-key", "cell_type"]


def _cli(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "virtualcell.cli", *args], env=ENV, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    """A tiny counts h5ad (CSR): 2 cell types x control/stimulated, 30 genes."""
    import anndata as ad
    import pandas as pd

    rng = np.random.default_rng(0)
    n, g = 240, 30
    obs = pd.DataFrame({"condition": np.tile(["control", "stimulated"], n // 2),
                        "cell_type": np.repeat(["a", "b"], n // 2)}, index=[f"c{i}" for i in range(n)])
    counts = rng.poisson(rng.gamma(2.0, 1.0, size=(1, g)) * (1 + (obs["condition"] == "stimulated").to_numpy()[:, None]))
    path = tmp_path_factory.mktemp("scale") / "cells.h5ad"
    ad.AnnData(X=sp.csr_matrix(counts.astype(np.float32)), obs=obs,
               var=pd.DataFrame(index=[f"g{i}" for i in range(g)])).write_h5ad(path)
    return path


def test_fit_from_disk_saves_a_loadable_pipeline(cells, tmp_path):
    out = tmp_path / "pipe"
    done = _cli("fit", "--data", str(cells), "--out", str(out), "--from-disk", *VAE)
    assert done.returncode == 0, done.stderr[-3000:]
    import virtualcell as vc

    pipeline = vc.load_pipeline(out)
    assert pipeline.metadata["training"]["from_disk"] is True
    assert pipeline.metadata["conditions"] == ["control", "stimulated"]


def test_nproc_2_trains_in_two_processes_and_saves_once(cells, tmp_path):
    out = tmp_path / "pipe"
    done = _cli("fit", "--data", str(cells), "--out", str(out), "--nproc", "2", *VAE)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("saved the fitted pipeline") == 1, done.stdout
    assert (out / "pipeline.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]        # nothing else written beside it
    assert "in 2 processes" in done.stderr
    import virtualcell as vc

    assert vc.load_pipeline(out).metadata["training"]["from_disk"] is True


@pytest.mark.parametrize("args, says", [
    (["--nproc", "0", *VAE], "--nproc 0"),
    (["--from-disk", "--encoder", "pca"], "'vae' encoder"),
])
def test_bad_combinations_are_clear_errors(cells, tmp_path, args, says):
    done = _cli("fit", "--data", str(cells), "--out", str(tmp_path / "pipe"), *args)
    assert done.returncode == 2, done.stderr
    assert "error:" in done.stderr and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "pipe").exists()


def test_a_failing_process_fails_the_command(cells, tmp_path):
    """Every process refuses a CSC matrix: the launcher fails, the command says so and saves nothing."""
    import anndata as ad

    adata = ad.read_h5ad(cells)
    adata.X = sp.csc_matrix(adata.X)
    adata.write_h5ad(tmp_path / "csc.h5ad")
    done = _cli("fit", "--data", str(tmp_path / "csc.h5ad"), "--out", str(tmp_path / "pipe"), "--nproc", "2", *VAE)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "CSC" in done.stderr and "error: the 2-process fit failed" in done.stderr, done.stderr[-3000:]
    assert not (tmp_path / "pipe").exists()
