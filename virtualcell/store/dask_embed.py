"""Embedding on Dask: chunks of cells mapped over ``dask.distributed`` workers, each writing its own region.

The client reserves the rows (under the key's lock), saves the encoder as an artifact folder inside
the store (workers load it through the registry: no pickled model), and submits one task per run
of store chunks. A task reopens the source file, encodes its rows and writes them into its own
chunk-aligned region of ``values`` (no two tasks touch one zarr chunk, so no locks are needed). A
task is idempotent: when a worker dies, the scheduler reruns it elsewhere and it writes the same
bytes again. Only when every task has finished does the client write ``obs`` and commit the row
count, so readers never see rows that are not all written.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

from ..component import Encoder
from ..data.preprocess import Preprocessing
from .format import Snapshot, StoreError

__all__ = ["dask_embed", "connect", "encode_region"]

_ENCODERS: dict[str, Encoder] = {}  # per worker process: artifact folder -> loaded encoder


def connect(scheduler: str):
    """A ``dask.distributed.Client`` for ``"local:N"`` (a LocalCluster of N processes) or ``"tcp://host:port"``."""
    from dask.distributed import Client, LocalCluster

    if scheduler.startswith("local:"):
        try:
            n = int(scheduler.split(":", 1)[1])
        except ValueError:
            n = 0
        if n < 1:
            raise StoreError(f"--scheduler {scheduler!r}: write local:N with N >= 1 worker processes (e.g. local:2).")
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
        return Client(cluster)
    if scheduler.startswith("tcp://"):
        try:
            return Client(scheduler, timeout="20s")
        except OSError as error:
            raise StoreError(f"No Dask scheduler answered at {scheduler} ({error}); start one with `dask scheduler`.") from error
    raise StoreError(f"--scheduler {scheduler!r} is neither local:N nor tcp://HOST:PORT.")


def regions(start: int, n_rows: int, chunk_rows: int, rows_per_task: int) -> list[tuple[int, int]]:
    """Source row ranges whose store rows ``start + r`` begin on chunk boundaries (the first may not)."""
    per_task = max(rows_per_task // chunk_rows, 1) * chunk_rows
    first_end = min(n_rows, (start // chunk_rows + 1) * chunk_rows - start) if start % chunk_rows else 0
    edges = [0] + ([first_end] if first_end else []) + list(range(first_end + per_task, n_rows, per_task)) + [n_rows]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def encode_region(source_path: str, layer: str | None, encoder_path: str, recipe: dict, store_path: str,
                  values_path: str, source_start: int, source_stop: int, target_start: int, batch_size: int) -> int:
    """Worker task: encode source rows ``[source_start, source_stop)`` into rows ``target_start..`` of the store."""
    import zarr

    from ..execution import torch_threads
    from ..registry import load_component
    from .encode import encode_chunk
    from .source import open_source

    encoder = _ENCODERS.get(encoder_path)
    if encoder is None:
        encoder = _ENCODERS[encoder_path] = load_component(encoder_path)
    source = open_source(source_path, layer=layer)
    try:
        with torch_threads(1):   # one thread per worker process: the workers already fill the cores
            z = encode_chunk(source.rows(source_start, source_stop), encoder, Preprocessing.from_spec(recipe),
                             batch_size=batch_size)
    finally:
        source.close()
    values = zarr.open_array(store_path, path=values_path, mode="r+", zarr_format=3)
    values[target_start:target_start + len(z)] = z
    return len(z)


def dask_embed(source, encoder: Encoder, recipe: Preprocessing, store, key: str, *, obs: pd.DataFrame,
               provenance: dict, client: Any, chunk_rows: int, batch_size: int, overwrite: bool, append: bool,
               progress: bool = True, rows_per_task: int | None = None) -> Snapshot:
    """Encode ``source`` on ``client``'s workers into ``store[key]`` (see the module docstring)."""
    from dask.distributed import as_completed
    from tqdm.auto import tqdm

    from .encode import check_source_for_workers

    source_path = str(Path(check_source_for_workers(source)).resolve())
    local = store.local_root
    if local is None:
        raise StoreError("Dask embedding writes into a store folder that every worker can reach; give a local "
                         "(or shared-filesystem) store path.")
    work = local / ".virtualcell-work" / uuid.uuid4().hex[:12]
    encoder_path = str(encoder.save(work / "encoder"))
    per_task = rows_per_task or chunk_rows * 4
    try:
        with store.writer(key, dim=encoder.n_latent, provenance=provenance, overwrite=overwrite, append=append,
                          chunk_rows=chunk_rows) as writer:
            writer.check_new_names(obs.index)
            start = writer.reserve(source.n_obs)
            store_chunk = writer.state.chunk_rows
            values_path = f"{writer.group.path}/values"
            tasks = [client.submit(encode_region, source_path, source.layer, encoder_path, recipe.to_dict(),
                                   str(local.resolve()), values_path, a, b, start + a, batch_size, pure=False,
                                   key=f"virtualcell-embed-{uuid.uuid4().hex[:8]}-{a}")
                     for a, b in regions(start, source.n_obs, store_chunk, per_task)]
            try:
                with tqdm(total=source.n_obs, desc=f"embedding into {key} on dask", unit="cells",
                          disable=not progress) as bar:
                    for future in as_completed(tasks):
                        bar.update(future.result())
            except BaseException:
                client.cancel(tasks)  # no task may write after the temporary key is removed
                raise
            return writer.commit(obs, provenance=provenance)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if (local / ".virtualcell-work").is_dir() and not any((local / ".virtualcell-work").iterdir()):
            (local / ".virtualcell-work").rmdir()
