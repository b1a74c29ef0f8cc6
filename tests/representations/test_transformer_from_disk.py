"""The gene-token transformer trained from disk: ``vc.PerturbationPipeline(encoder="transformer").fit(path)``
against the same fit in memory, the block loader, rank mode's sampled medians, mid-epoch resume and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import virtualcell as vc
from virtualcell.data.simulate_perturbation import simulate_perturbation
from virtualcell.representations.transformer import TransformerEncoder
from virtualcell.representations.transformer.disk_medians import disk_gene_medians, sample_rows
from virtualcell.representations.transformer.tokenize import gene_medians
from virtualcell.train.disk_loader import DiskRows

TINY = {"name": "transformer", "hidden_size": 16, "num_layers": 1, "num_heads": 2, "max_tokens": 16,
        "max_epochs": 2, "batch_size": 32}
OPTIONS = {k: v for k, v in TINY.items() if k != "name"}            # TransformerEncoder(**OPTIONS)
MLP = {"name": "mlp-decoder", "n_hidden": 16, "max_epochs": 2, "batch_size": 32}
BLOCKS = {"exact": False, "block_size": 8, "pool_blocks": 2}      # the shuffled-block loader on a small file
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "VIRTUALCELL_PROGRESS": "0"}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """360 cells x 40 genes of simulated counts (CSR h5ad), the same log-normalised in memory, 30 controls."""
    adata = simulate_perturbation(60, 40, 3, counts=True, seed=0)
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    folder = tmp_path_factory.mktemp("transformer_disk")
    adata.write_h5ad(folder / "counts.h5ad")
    logged = adata.copy()
    logged.X = logged.X.log1p()
    logged.write_h5ad(folder / "log.h5ad")
    return adata, folder, adata[adata.obs["condition"] == "control"][:30].copy()


def _fit(data, *, disk=None, encoder=TINY):
    pipe = vc.PerturbationPipeline(encoder=dict(encoder), decoder=dict(MLP), preprocess="log1p")
    return pipe.fit(data, context_key="cell_type", progress=False, seed=0, disk=disk)


def _predict(pipe, control):
    return np.asarray(pipe.predict(control, target="stimulated").X)


@pytest.mark.parametrize("mode", ["rank", "binned"])
def test_exact_order_from_disk_is_the_in_memory_fit(store, mode, one_torch_thread):
    adata, folder, control = store
    memory = _fit(adata, encoder={**TINY, "mode": mode})
    disk = _fit(str(folder / "counts.h5ad"), disk={"exact": True}, encoder={**TINY, "mode": mode})
    assert disk.metadata["training"]["from_disk"] and "read_whole" not in disk.metadata["training"]
    torch.testing.assert_close(disk.encoder.vocab_medians, memory.encoder.vocab_medians, rtol=0, atol=0)
    for name, weight in memory.encoder.model.state_dict().items():
        torch.testing.assert_close(disk.encoder.model.state_dict()[name], weight, atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(_predict(disk, control), _predict(memory, control), atol=1e-4)


def test_block_loader_trains_and_records_throughput_and_memory(store, one_torch_thread):
    adata, folder, control = store
    pipe = _fit(str(folder / "counts.h5ad"), disk=BLOCKS)
    record = pipe.encoder.training_history
    assert record["n_epochs"] == 2 and np.isfinite(record["epochs"][-1]["loss"])
    assert record["cells_per_s"] > 0 and record["peak_memory_mb"] > 0
    assert "read_whole" not in pipe.metadata["training"] and np.isfinite(_predict(pipe, control)).all()


def test_rank_medians_from_a_sample_when_the_file_is_bigger(store, one_torch_thread):
    """At most ``median_cells`` cells, sampled a priori with the seed; every cell (exact medians) otherwise."""
    adata, folder, _ = store
    rows = DiskRows(folder / "log.h5ad")
    x = torch.from_numpy(adata.X.log1p().toarray())
    everything = gene_medians(x)
    assert torch.equal(disk_gene_medians(rows, at_most=360, seed=0, chunk=50), everything)
    sample = sample_rows(360, 40, seed=3)
    assert sample.size == 40 and np.all(np.diff(sample) > 0) and np.array_equal(sample, sample_rows(360, 40, seed=3))
    sampled = disk_gene_medians(rows, at_most=40, seed=3, chunk=16)
    assert torch.equal(sampled, gene_medians(x[torch.from_numpy(sample)])) and not torch.equal(sampled, everything)

    rows.loader_options = {"block_size": 8, "pool_blocks": 2}
    genes = list(adata.var_names)
    small = TransformerEncoder(**{**OPTIONS, "max_epochs": 1, "median_cells": 40}).fit(rows, genes, seed=3,
                                                                                      progress=False)
    assert torch.equal(small.vocab_medians, sampled)


def test_values_are_checked_per_batch_read(store, tmp_path, one_torch_thread):
    import anndata as ad

    adata, _, _ = store
    scaled = ad.AnnData(X=adata.X.toarray() - 1.0)                   # scaled data: negative values
    scaled.write_h5ad(tmp_path / "scaled.h5ad")
    encoder = TransformerEncoder(**OPTIONS)
    with pytest.raises(ValueError, match="negative values"):
        encoder.fit(DiskRows(tmp_path / "scaled.h5ad"), [f"g{i}" for i in range(40)], progress=False)


def test_loader_training_resumes_mid_epoch(store, tmp_path, one_torch_thread, kill_reads_after):
    adata, folder, _ = store
    genes = list(adata.var_names)

    def fit(checkpoint_dir, stop_after=None):
        rows = DiskRows(folder / "log.h5ad")
        rows.loader_options, rows.checkpoint_every_steps = {"block_size": 8, "pool_blocks": 2}, 2
        if stop_after is not None:   # a process killed mid-epoch: the reads stop after `stop_after` of them
            kill_reads_after(rows, stop_after)
        encoder = TransformerEncoder(**OPTIONS, checkpoint_dir=str(checkpoint_dir))
        return encoder.fit(rows, genes, seed=0, progress=False)

    whole = fit(tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path / "killed", stop_after=16)   # 1 read for the medians, ~12 per epoch: killed in the 2nd
    assert '"in_epoch"' in (tmp_path / "killed" / "checkpoint.json").read_text()
    resumed = fit(tmp_path / "killed")
    for name, weight in whole.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], weight)
    assert resumed.history.epochs[-1]["loss"] == pytest.approx(whole.history.epochs[-1]["loss"], rel=1e-6)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "virtualcell.cli", *args], env=ENV, capture_output=True, text=True,
                          timeout=180)


CLI = ["--encoder", "transformer", "--encoder-option", "hidden_size=16", "--encoder-option", "num_layers=1",
       "--encoder-option", "num_heads=2", "--encoder-option", "max_tokens=16", "--encoder-option", "batch_size=32",
       "--decoder", "mlp-decoder", "--decoder-option", "n_hidden=16", "--epochs", "1", "--context-key", "cell_type"]


@pytest.mark.parametrize("how", [["--from-disk"], ["--nproc", "2", "--encoder-option", "mode=binned"]])
def test_cli_fits_the_transformer_from_disk(store, tmp_path, how):
    """``--from-disk`` (this small file is read whole, one process) and ``--nproc 2`` (the block loader in two
    gloo processes, DistributedDataParallel; binned mode, whose unused masked-LM head is frozen)."""
    _, folder, control = store
    out = tmp_path / "pipe"
    done = _cli("fit", "--data", str(folder / "counts.h5ad"), "--out", str(out), *how, *CLI)
    assert done.returncode == 0, done.stderr[-3000:]
    pipeline = vc.load_pipeline(out)
    assert type(pipeline.encoder).__name__ == "TransformerEncoder" and pipeline.metadata["training"]["from_disk"]
    assert pipeline.encoder.training_history["n_epochs"] == 1
    assert np.isfinite(_predict(pipeline, control)).all()
