"""Training from disk: DiskRows / DiskLoader, streaming statistics, fit from a path, mid-epoch resume."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from virtualcell.data.checks import DataError
from virtualcell.data.preprocess import Preprocessing
from virtualcell.data.simulate_perturbation import simulate_perturbation
from virtualcell.data.streaming import StreamingMoments, StreamingPCA, batch_recipe, hvg_seurat
from virtualcell.nn.group_means import group_index, group_sums, means_from_sums
from virtualcell.train.disk_loader import DiskLoader, DiskRows


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """The same simulated counts as CSR h5ad, CSR zarr and dense h5ad (360 cells x 40 genes)."""
    folder = tmp_path_factory.mktemp("stores")
    adata = simulate_perturbation(60, 40, 3, counts=True, seed=0)
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    adata.write_h5ad(folder / "csr.h5ad")
    adata.write_zarr(folder / "csr.zarr")
    dense = adata.copy()
    dense.X = dense.X.toarray()
    dense.write_h5ad(folder / "dense.h5ad")
    return adata, folder


@pytest.mark.parametrize("name", ["csr.h5ad", "csr.zarr", "dense.h5ad"])
def test_rows_in_any_order_match_memory(stores, name):
    adata, folder = stores
    rows = DiskRows(folder / name)
    want = adata.X.toarray()
    order = np.array([5, 3, 4, 300, 3, 0, 359, 6])        # unsorted, repeated, runs
    assert rows.shape == adata.shape
    np.testing.assert_array_equal(rows[order].numpy(), want[order])
    np.testing.assert_array_equal(rows[torch.arange(10, 20)].numpy(), want[10:20])


def test_recipe_per_batch_is_the_in_memory_recipe(stores):
    adata, folder = stores
    prep = Preprocessing.from_spec("log1p").fit(adata)
    rows = DiskRows(folder / "csr.h5ad", transform=batch_recipe(prep, adata.var_names, adata.var_names[::-2]),
                    n_features=20)
    np.testing.assert_array_equal(rows[np.arange(40, 90)].numpy(),
                                  prep.transform(adata[40:90], genes=list(adata.var_names[::-2])))


def test_clear_errors(stores, tmp_path):
    adata, folder = stores
    with pytest.raises(DataError, match="not in the on-disk matrix"):
        batch_recipe(Preprocessing(), adata.var_names, ["gene_nowhere"])
    csc = adata.copy()
    csc.X = sp.csc_matrix(csc.X)
    csc.write_h5ad(tmp_path / "csc.h5ad")
    with pytest.raises(ValueError, match="Rewrite it as CSR"):
        DiskRows(tmp_path / "csc.h5ad")
    with pytest.raises(FileNotFoundError, match="No AnnData store"):
        DiskRows(tmp_path / "missing.h5ad")


def test_epochs_cover_every_row_once_and_shard_by_rank(stores):
    _, folder = stores
    loader = DiskLoader(DiskRows(folder / "csr.h5ad"), batch_size=16, indices=np.arange(0, 360, 2), block_size=8,
                        pool_blocks=3, seed=1)
    first, again, second = loader.batches(0), loader.batches(0), loader.batches(1)
    assert sorted(np.concatenate(first)) == list(range(0, 360, 2))
    assert all((a == b).all() for a, b in zip(first, again))
    assert not all((a == b).all() for a, b in zip(first, second))
    shards = [[b.rows for b in loader.iterate(0, start=32, rank=r, world=2)] for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == (len(first) - 2) // 2
    assert all((a == b).all() for a, b in zip(shards[1], first[3::2]))
    wide = DiskLoader(loader.source, batch_size=32, indices=loader.indices, block_size=8, pool_blocks=3, seed=1)
    steps = [np.concatenate(pair) for pair in zip(*shards)]   # a step of 2 x 16 = a step of 1 x 32
    assert all((a == b).all() for a, b in zip(steps, wide.batches(0, start=32)))
    batch = next(loader.iterate(0))
    assert batch.x.shape == (16, 40) and len(batch) == 16


def test_streaming_statistics_match_in_memory(stores):
    adata, folder = stores
    rows = DiskRows(folder / "csr.h5ad")
    x = adata.X.toarray().astype(np.float64)
    moments, pca = StreamingMoments(), StreamingPCA(3)
    sums, totals = torch.zeros(6, 40, dtype=torch.float64), torch.zeros(6, dtype=torch.float64)
    condition = (adata.obs["condition"] != "control").to_numpy().astype(int)
    context = adata.obs["cell_type"].cat.codes.to_numpy()
    for begin in range(0, 360, 77):
        index = np.arange(begin, min(begin + 77, 360))
        moments.update(rows[index])
        pca.update(rows[index])
        group = group_index(torch.as_tensor(condition[index]), torch.as_tensor(context[index]).long(), 2)
        chunk_sums, chunk_totals = group_sums(rows[index], group, 6)
        sums, totals = sums + chunk_sums, totals + chunk_totals
    np.testing.assert_allclose(moments.mean, x.mean(0), rtol=1e-10)
    np.testing.assert_allclose(moments.var, x.var(0, ddof=1), rtol=1e-9)
    means, counts = means_from_sums(sums, totals, 2)
    in_group = (context == 1) & (condition == 1)
    np.testing.assert_allclose(means[1, 1].numpy(), x[in_group].mean(0), rtol=1e-5)
    assert counts[1, 1] == in_group.sum()
    _, components, variance = pca.result()
    centred = x - x.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    np.testing.assert_allclose(variance.numpy(), s[:3] ** 2 / 359, rtol=1e-4)
    np.testing.assert_allclose(np.abs(components.numpy()), np.abs(vt[:3]), atol=1e-4)


def test_streaming_hvgs_are_scanpys(stores):
    import scanpy as sc

    adata, _ = stores
    work = adata.copy()
    sc.pp.normalize_total(work, target_sum=1e4)
    moments = StreamingMoments()
    for begin in range(0, 360, 50):
        moments.update(work.X[begin:begin + 50])
    sc.pp.log1p(work)
    sc.pp.highly_variable_genes(work, n_top_genes=12, flavor="seurat")
    want = [str(g) for g in work.var_names[work.var["highly_variable"].to_numpy()]]
    assert hvg_seurat(moments.mean, moments.var, list(adata.var_names), 12) == want


def test_fit_from_a_path_is_the_in_memory_fit(stores):
    import virtualcell as vc

    adata, folder = stores
    encoder = {"name": "vae", "n_hidden": 16, "n_latent": 4, "max_epochs": 2, "batch_size": 32}
    control = adata[adata.obs["condition"] == "control"][:30].copy()
    predictions = []
    for data, disk in ((adata, None), (str(folder / "csr.h5ad"), {"exact": True}),
                       (ad.read_h5ad(folder / "csr.h5ad", backed="r"), {"exact": True})):
        pipe = vc.PerturbationPipeline(encoder=dict(encoder), preprocess="log1p")
        pipe.fit(data, context_key="cell_type", progress=False, disk=disk)
        predictions.append(np.asarray(pipe.predict(control, target="stimulated").X))
    np.testing.assert_array_equal(predictions[0], predictions[1])
    np.testing.assert_array_equal(predictions[0], predictions[2])
    assert pipe.metadata["training"]["from_disk"] and pipe.response_means[0].shape == (3, 2, 40)
    blocks = vc.PerturbationPipeline(encoder=dict(encoder), preprocess="log1p")
    blocks.fit(folder / "csr.zarr", context_key="cell_type", progress=False, disk={"block_size": 8})
    record = blocks.encoder.history.record()
    assert record["cells_per_s"] > 0 and record["peak_memory_mb"] > 0


def test_loader_training_resumes_mid_epoch(stores, tmp_path, kill_reads_after):
    from virtualcell.representations.vae import VAEEncoder

    adata, folder = stores

    def fit(checkpoint_dir, stop_after=None):
        rows = DiskRows(folder / "csr.h5ad")
        rows.loader_options, rows.checkpoint_every_steps = {"block_size": 8, "pool_blocks": 2}, 2
        if stop_after is not None:   # a process killed mid-epoch: the loader dies after `stop_after` batches
            kill_reads_after(rows, stop_after)
        encoder = VAEEncoder(n_hidden=16, n_latent=4, max_epochs=2, batch_size=32, checkpoint_dir=str(checkpoint_dir))
        return encoder.fit(rows, list(adata.var_names), seed=0, progress=False)

    whole = fit(tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path / "killed", stop_after=5)    # reads of the 2nd epoch: some steps of it are checkpointed
    resumed = fit(tmp_path / "killed")
    for a, b in zip(whole.vae.state_dict().values(), resumed.vae.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert whole.history.epochs[-1]["loss"] == pytest.approx(resumed.history.epochs[-1]["loss"], rel=1e-6)


def _shards(adata, folder):
    """The store cut into 3 shards: CSR h5ad, CSR zarr, dense h5ad (one dataset, in name order)."""
    folder.mkdir()
    adata[:100].write_h5ad(folder / "p0.h5ad")
    adata[100:250].write_zarr(folder / "p1.zarr")
    dense = adata[250:].copy()
    dense.X = dense.X.toarray()
    dense.write_h5ad(folder / "p2.h5ad")
    return [folder / "p0.h5ad", folder / "p1.zarr", folder / "p2.h5ad"]


def test_shards_are_one_dataset(stores, tmp_path):
    import virtualcell as vc

    adata, folder = stores
    paths = _shards(adata, tmp_path / "plates")
    rows = DiskRows(paths)
    order = np.array([5, 99, 100, 101, 3, 249, 250, 359, 0, 100])    # across shard borders, repeated
    np.testing.assert_array_equal(rows[order].numpy(), adata.X.toarray()[order])
    encoder = {"name": "vae", "n_hidden": 16, "n_latent": 4, "max_epochs": 1, "batch_size": 32}
    control = adata[adata.obs["condition"] == "control"][:20].copy()
    predictions = []
    for data in (str(folder / "csr.h5ad"), [str(p) for p in paths], tmp_path / "plates"):
        pipe = vc.PerturbationPipeline(encoder=dict(encoder), preprocess="log1p")
        pipe.fit(data, context_key="cell_type", progress=False, disk={"exact": True})
        predictions.append(np.asarray(pipe.predict(control, target="stimulated").X))
        assert pipe.metadata["training"]["n_cells"] == 360
    np.testing.assert_array_equal(predictions[0], predictions[1])
    np.testing.assert_array_equal(predictions[0], predictions[2])


@pytest.mark.parametrize("change, says", [
    (lambda a: a[:, 3:], r"lacks 3 of them \(gene_0, gene_1, gene_2\)"),
    (lambda a: a[:, ::-1], "in another order"),
])
def test_a_shard_with_other_genes_is_refused_by_name(stores, tmp_path, change, says):
    import virtualcell as vc

    adata, folder = stores
    change(adata[:50]).copy().write_h5ad(tmp_path / "plate_2.h5ad")
    pipe = vc.PerturbationPipeline(encoder={"name": "vae", "max_epochs": 1}, preprocess="log1p")
    for attempt in (lambda: pipe.fit([folder / "csr.h5ad", tmp_path / "plate_2.h5ad"], progress=False),
                    lambda: DiskRows([folder / "csr.h5ad", tmp_path / "plate_2.h5ad"])):
        with pytest.raises(ValueError, match=says) as error:
            attempt()
        assert "plate_2.h5ad" in str(error.value) and "a[:, genes].copy()" in str(error.value)


def test_a_file_changed_while_training_stops_it_and_the_checkpoint_survives(stores, tmp_path):
    """The h5ad is appended to mid-epoch: the next read stops the fit with an error naming the file; the
    checkpoint already written is intact, refuses to resume on the changed file, resumes on the restored one."""
    import os
    import shutil

    from virtualcell.representations.vae import VAEEncoder

    adata, folder = stores
    path = tmp_path / "cells.h5ad"
    shutil.copy(folder / "csr.h5ad", path)
    size, mtime = path.stat().st_size, path.stat().st_mtime_ns
    checkpoint = tmp_path / "checkpoint"

    def fit(change_after=None):
        rows = DiskRows(path)
        rows.loader_options, rows.checkpoint_every_steps = {"block_size": 8, "pool_blocks": 2}, 2
        if change_after is not None:
            original, seen = rows.transformed, []

            def changing(raw):
                seen.append(1)
                if len(seen) == change_after:
                    with open(path, "ab") as handle:     # another process appends to the file
                        handle.write(b"\0" * 64)
                return original(raw)
            rows.transformed = changing
        encoder = VAEEncoder(n_hidden=16, n_latent=4, max_epochs=2, batch_size=32, checkpoint_dir=str(checkpoint))
        return encoder.fit(rows, list(adata.var_names), seed=0, progress=False)

    with pytest.raises(ValueError, match="changed while training") as error:
        fit(change_after=9)
    assert str(path) in str(error.value) and "restart from the last checkpoint" in str(error.value)
    saved = (checkpoint / "checkpoint.json").read_text()
    assert '"in_epoch"' in saved                        # a mid-epoch checkpoint was written before the change
    with pytest.raises(ValueError, match="checkpoint cannot resume on this data"):
        fit()                                           # resuming on the changed file is refused
    assert (checkpoint / "checkpoint.json").read_text() == saved
    os.truncate(path, size)                             # the file restored as it was
    os.utime(path, ns=(mtime, mtime))
    resumed = fit()
    assert len(resumed.history.epochs) == 2
