"""`virtualcell fit --from-disk` and `--nproc N` as a user runs them (the CLI as a subprocess)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def test_fit_from_disk_trains_pca_and_an_mlp_decoder(cells, tmp_path):
    out = tmp_path / "pipe"
    done = _cli("fit", "--data", str(cells), "--out", str(out), "--from-disk", "--encoder", "pca",
                "--encoder-option", "n_components=5", "--decoder", "mlp-decoder", "--decoder-option", "max_epochs=2")
    assert done.returncode == 0, done.stderr[-3000:]
    import virtualcell as vc

    pipeline = vc.load_pipeline(out)
    assert pipeline.metadata["training"]["from_disk"] is True
    assert type(pipeline.decoder).__name__ == "MLPDecoder"


def test_nproc_2_trains_in_two_processes_and_saves_once(cells, tmp_path):
    out = tmp_path / "pipe"
    done = _cli("fit", "--data", str(cells), "--out", str(out), "--nproc", "2", *VAE)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("saved the fitted pipeline") == 1, done.stdout
    assert (out / "pipeline.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]        # nothing else written beside it
    assert "in 2 processes" in done.stderr
    assert done.stderr.count("--preprocess auto:") == 1, done.stderr    # rank 0 alone prints notes and warnings
    import virtualcell as vc

    assert vc.load_pipeline(out).metadata["training"]["from_disk"] is True


def test_fit_from_disk_excludes_cells_without_reading_them(cells, tmp_path):
    """``--exclude`` from disk selects the kept rows (a DiskCells) and fits them as the same subset in memory."""
    import virtualcell as vc

    pca = ["--encoder", "pca", "--encoder-option", "n_components=5", "--context-key", "cell_type",
           "--exclude", "cell_type=b&condition=stimulated"]
    disk, memory = tmp_path / "disk", tmp_path / "memory"
    done = _cli("fit", "--data", str(cells), "--out", str(disk), "--from-disk", *pca)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _cli("fit", "--data", str(cells), "--out", str(memory), *pca).returncode == 0
    fitted, reference = vc.load_pipeline(disk), vc.load_pipeline(memory)
    assert fitted.metadata["training"]["n_cells"] == reference.metadata["training"]["n_cells"] == 180
    np.testing.assert_allclose(fitted.encoder.components.numpy(), reference.encoder.components.numpy(), atol=1e-5)


@pytest.mark.parametrize("args, says", [
    (["--nproc", "0", *VAE], "--nproc 0"),
    (["--from-disk", "--encoder", "graph"], "--encoder vae, pca or transformer"),
    (["--from-disk", "--decoder", "label-decoder"], "--decoder mlp-decoder"),
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


def _counts(path, n: int, seed: int, genes: list[str]) -> None:
    import anndata as ad
    import pandas as pd

    rng = np.random.default_rng(seed)
    obs = pd.DataFrame({"condition": np.tile(["control", "stimulated"], n // 2),
                        "cell_type": np.repeat(["a", "b"], n // 2)}, index=[f"s{seed}c{i}" for i in range(n)])
    counts = rng.poisson(2.0 * (1 + (obs["condition"] == "stimulated").to_numpy()[:, None]), size=(n, len(genes)))
    ad.AnnData(X=sp.csr_matrix(counts.astype(np.float32)), obs=obs, var=pd.DataFrame(index=genes)).write_h5ad(path)


def test_a_shard_with_a_missing_gene_is_a_clear_error(tmp_path):
    plates = tmp_path / "plates"
    plates.mkdir()
    _counts(plates / "plate_1.h5ad", 40, 1, [f"g{i}" for i in range(30)])
    _counts(plates / "plate_2.h5ad", 40, 2, [f"g{i}" for i in range(1, 30)])
    done = _cli("fit", "--data", str(plates), "--out", str(tmp_path / "pipe"), "--from-disk", *VAE)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "error: Shard" in done.stderr and "plate_2.h5ad" in done.stderr and "lacks 1 of them (g0)" in done.stderr
    assert not (tmp_path / "pipe").exists()


def _children(pid: int) -> dict[int, str]:
    """``{pid: RANK}`` of the processes whose parent is ``pid`` (Linux /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                env = dict(v.split("=", 1) for v in (entry / "environ").read_text().split("\0") if "=" in v)
                found[int(entry.name)] = env.get("RANK", "")
        except OSError:
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker processes in /proc (Linux)")
def test_a_process_killed_mid_epoch_stops_the_job_and_the_checkpoint_resumes(tmp_path):
    """`--nproc 2` on a folder of 2 shards; rank 1 is killed after the first mid-epoch checkpoint: rank 0 stops,
    the command exits 2 naming the kept checkpoint; resuming on the changed data is refused; the same command
    in one process resumes from it and saves the pipeline."""
    plates = tmp_path / "plates"
    plates.mkdir()
    for k in range(2):
        _counts(plates / f"plate_{k}.h5ad", 1000, k, [f"g{i}" for i in range(30)])
    checkpoint, out = tmp_path / "checkpoint", tmp_path / "pipe"
    args = ["fit", "--data", str(plates), "--out", str(out), "--checkpoint", str(checkpoint), "--checkpoint-every", "5",
            *VAE[:4], "--encoder-option", "batch_size=16", "--epochs", "2", "--context-key", "cell_type"]
    job = subprocess.Popen([sys.executable, "-m", "virtualcell.cli", *args, "--nproc", "2"], env=ENV,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not (checkpoint / "checkpoint.json").exists() and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        ranks = {rank: pid for pid, rank in _children(job.pid).items()}
        assert "1" in ranks, (job.poll(), ranks)
        os.kill(ranks["1"], signal.SIGKILL)
        _, stderr = job.communicate(timeout=60)                  # no hang: rank 0 is stopped too
    finally:
        job.kill()
    assert job.returncode == 2, stderr[-3000:]
    assert "error: the 2-process fit failed: process 1 was killed by signal 9" in stderr, stderr[-3000:]
    assert f"The last checkpoint in {checkpoint} is kept" in stderr and not out.exists()
    assert "in_epoch" in json.loads((checkpoint / "checkpoint.json").read_text())["loop"]     # mid-epoch

    shard = plates / "plate_1.h5ad"
    stat = shard.stat()
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))   # the shard looks rewritten
    done = _cli(*args, "--from-disk")
    assert done.returncode == 2 and "checkpoint cannot resume on this data" in done.stderr, done.stderr[-3000:]
    assert "plate_1.h5ad changed since" in done.stderr
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns))           # restored

    done = _cli(*args, "--from-disk")                                   # one process resumes the 2-process run
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming from the checkpoint" in done.stderr and "cells into it" in done.stderr
    import virtualcell as vc

    pipeline = vc.load_pipeline(out)
    assert pipeline.metadata["training"]["n_cells"] == 2000
    assert pipeline.encoder.training_history["n_epochs"] == 2
