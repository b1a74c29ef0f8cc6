"""Embedding on a real dask.distributed LocalCluster (2 worker processes), including a worker killed mid-task."""

import os
import signal
import threading

import numpy as np
import pytest

from virtualcell.pipelines.embed import embed
from virtualcell.store import EmbeddingStore, StoreError
from virtualcell.store.dask_embed import regions

distributed = pytest.importorskip("dask.distributed")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as dask_client:
        yield dask_client


class KillOnceWorkerPlugin(distributed.WorkerPlugin):
    """SIGKILLs the worker process shortly after it starts a store task, once (a marker file remembers)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def setup(self, worker) -> None:
        self.worker = worker

    def transition(self, key, start, finish, **kwargs) -> None:
        if finish == "executing" and "virtualcell-embed" in str(key) and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGKILL)).start()


def test_regions_align_with_store_chunks():
    assert regions(0, 100, 10, 30) == [(0, 30), (30, 60), (60, 90), (90, 100)]
    assert regions(7, 50, 10, 20) == [(0, 3), (3, 23), (23, 43), (43, 50)]  # store rows 7..10 share a chunk
    for a, b in regions(13, 1000, 8, 64)[1:]:
        assert (13 + a) % 8 == 0


def test_dask_embed_equals_in_memory(client, atlas, tmp_path):
    folder, adata, pipeline = atlas
    expected = embed(adata, pipeline, copy=True).obsm["X_virtualcell"]
    state = embed(folder / "atlas.h5ad", pipeline, store=tmp_path / "s.zarr", key_added="pca", client=client, chunk_rows=8)
    assert state.n_rows == adata.n_obs
    store = EmbeddingStore(tmp_path / "s.zarr", mode="r")
    np.testing.assert_allclose(store.values("pca"), expected, atol=1e-4)
    assert store.obs("pca").index.tolist() == adata.obs_names.tolist()
    embed(folder / "again.zarr", pipeline, store=tmp_path / "s.zarr", key_added="pca", client=client, append=True,
          chunk_rows=8)
    np.testing.assert_allclose(EmbeddingStore(tmp_path / "s.zarr").values("pca"), np.vstack([expected, expected]), atol=1e-4)
    assert not (tmp_path / "s.zarr" / ".virtualcell-work").exists()
    with pytest.raises(StoreError, match="give a path"):
        embed(adata, pipeline, store=tmp_path / "s.zarr", key_added="mem", client=client)


def test_a_worker_killed_mid_task_is_retried_and_readers_never_see_half(client, atlas, tmp_path):
    import cloudpickle

    folder, adata, pipeline = atlas
    expected = embed(adata, pipeline, copy=True).obsm["X_virtualcell"]
    marker = tmp_path / "killed"
    cloudpickle.register_pickle_by_value(__import__(__name__))
    client.register_plugin(KillOnceWorkerPlugin(str(marker)), name="kill-once")
    seen, stop = set(), threading.Event()

    def read_counts():
        while not stop.is_set():
            try:
                seen.add(EmbeddingStore(tmp_path / "s.zarr", mode="r").snapshot("pca").n_rows)
            except StoreError:
                pass

    embed(folder / "atlas.h5ad", pipeline, store=tmp_path / "s.zarr", key_added="pca", chunk_rows=8)
    reader = threading.Thread(target=read_counts)
    reader.start()
    try:  # append on dask while a reader polls the row count and a worker dies
        state = embed(folder / "again.h5ad", pipeline, store=tmp_path / "s.zarr", key_added="pca", client=client,
                      chunk_rows=8, append=True)
    finally:
        stop.set()
        reader.join()
        client.unregister_worker_plugin("kill-once")
    assert marker.exists(), "no worker was killed"
    assert state.n_rows == 2 * adata.n_obs and seen <= {adata.n_obs, 2 * adata.n_obs} and adata.n_obs in seen
    np.testing.assert_allclose(EmbeddingStore(tmp_path / "s.zarr").values("pca"), np.vstack([expected, expected]), atol=1e-4)
    client.wait_for_workers(2, timeout=60)


def test_cli_embeds_on_a_running_scheduler(client, atlas, tmp_path):
    from typer.testing import CliRunner

    from virtualcell.cli import app

    folder, adata, pipeline = atlas
    model = pipeline.save(tmp_path / "pipeline")
    result = CliRunner().invoke(app, ["embed", "--data", str(folder / "atlas.h5ad"), "--encoder", str(model),
                                      "--store", str(tmp_path / "s.zarr"), "--key", "pca", "--chunk-rows", "16",
                                      "--scheduler", client.scheduler.address])
    assert result.exit_code == 0, result.output
    assert f"--scheduler {client.scheduler.address}" in result.output
    assert EmbeddingStore(tmp_path / "s.zarr").snapshot("pca").n_rows == adata.n_obs
    result = CliRunner().invoke(app, ["embed", "--data", str(folder / "atlas.h5ad"), "--encoder", str(model),
                                      "--store", str(tmp_path / "s.zarr"), "--key", "x", "--scheduler", "udp://nowhere"])
    assert result.exit_code == 2 and "neither local:N nor tcp://HOST:PORT" in result.output
