"""Embedding-store commands: embed (in memory, streamed, or on Dask), query (filters, neighbours, --out)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Optional

import typer

from .app import app
from .common import check_output_file, fail, read_h5ad, refuse_overwriting_input
from .params import DeviceOption, OverwriteFile

#: stream when the dense matrix the encoder sees would take more than this share of available memory
STREAM_SHARE = 0.25


def available_memory() -> int:
    """Bytes of memory available now (Linux ``sysconf``; psutil elsewhere)."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        import psutil

        return int(psutil.virtual_memory().available)


def should_stream(data: Path, n_genes: int) -> tuple[bool, str]:
    """Stream ``data`` when its cells x ``n_genes`` float32 (plus the file) exceed a share of free memory."""
    from ..store.source import open_source

    source = open_source(data)
    try:
        need = source.n_obs * max(n_genes, source.n_vars) * 4 + (data.stat().st_size if data.is_file() else 0)
    finally:
        source.close()
    free = available_memory()
    return need > STREAM_SHARE * free, f"{source.n_obs} cells need ~{need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free"


@app.command()
def embed(
    data: Path = typer.Option(..., help=".h5ad file or zarr-stored AnnData with the cells to encode."),
    encoder: Path = typer.Option(..., help="A saved encoder folder, or a saved pipeline folder (its preprocessing is reused)."),
    store: Path = typer.Option(..., help="Embedding store (zarr v3 folder); created when missing."),
    key: str = typer.Option("X_virtualcell", help="Name of the embedding in the store."),
    preprocess: str = typer.Option("none", help="Preprocessing for a bare encoder: 'none', 'log1p' or 'kang-full'."),
    overwrite: bool = typer.Option(False, help="Replace an existing key."),
    append: bool = typer.Option(False, help="Add the cells to an existing key."),
    mode: str = typer.Option("auto", help="'memory' (load all), 'stream' (chunk by chunk) or 'auto' (stream when the "
                                          "data would not fit comfortably in free memory)."),
    scheduler: Optional[str] = typer.Option(None, help="Encode on Dask: 'local:N' (N worker processes) or "
                                                       "'tcp://HOST:PORT' (a running scheduler). Implies streaming."),
    chunk_rows: int = typer.Option(8192, min=1, help="Cells per chunk when streaming."),
    device: DeviceOption = "cpu",
) -> None:
    """Encode cells into a universal representation and store it (zarr) with its provenance."""
    from ..pipelines import PerturbationPipeline
    from ..pipelines.embed import embed as embed_cells
    from ..pipelines.embed import encoder_with_recipe
    from ..store import StoreError

    if mode not in ("auto", "memory", "stream"):
        fail(f"--mode {mode!r}: choose auto, memory or stream.")
    if overwrite and append:
        fail("--overwrite replaces the key and --append adds cells to it: choose one.")
    client = None
    try:
        if not data.exists():
            raise FileNotFoundError(f"--data {data} does not exist.")
        refuse_overwriting_input(store, data)
        model = PerturbationPipeline.load(encoder, device=device) if (encoder / "pipeline.json").exists() else encoder
        module, recipe, layer = encoder_with_recipe(model, preprocess)
        stream, why = (True, "--mode stream") if mode == "stream" else (False, "--mode memory")
        if mode == "auto":
            stream, why = should_stream(data, len(module.input_features))
        if scheduler is not None:
            from ..store.dask_embed import connect

            client, stream, why = connect(scheduler), True, f"--scheduler {scheduler}"
        if stream:
            typer.echo(f"streaming {data} in chunks of {chunk_rows} cells ({why})", err=True)
            state = embed_cells(data, model, preprocess=preprocess, key_added=key, store=store, overwrite=overwrite,
                                append=append, stream=True, client=client, chunk_rows=chunk_rows, device=device,
                                progress=True)
            n, d = state.n_rows, state.dim
        else:
            adata = read_h5ad(data) if data.is_file() else __import__("anndata").read_zarr(data)
            embed_cells(adata, model, preprocess=preprocess, key_added=key, store=store, overwrite=overwrite,
                        append=append, device=device)
            n, d = adata.n_obs, adata.obsm[key].shape[1]
    except (StoreError, ValueError, KeyError, TypeError, FileNotFoundError) as error:
        fail(error)
    finally:
        if client is not None:
            client.close()
    typer.echo(f"stored {n} cells x {d} dimensions as {key!r} in {store}")


def _cells_filter(cells: str) -> str:
    """The query-cell selection in the filter grammar (``key=value&...`` and ``index=NAME`` still accepted)."""
    if re.fullmatch(r"\s*[\w.]+=[^=&]+(&[\w.]+=[^=&]+)*\s*", cells):
        return " & ".join(f"`{k.strip()}` == {json.dumps(v.strip(), ensure_ascii=False)}" for k, v in
                          (part.split("=", 1) for part in cells.split("&")))
    return cells


@app.command()
def query(
    store: Path = typer.Option(..., help="Embedding store written by `virtualcell embed`."),
    key: str = typer.Option(..., help="Embedding to search."),
    cells: str = typer.Option(..., help="Query cells: a filter such as 'cell_type == \"CD4T\" & condition in "
                                        "[\"control\"]' (or the short 'key=value&key=value', 'index=NAME')."),
    filter: Optional[str] = typer.Option(None, "--filter", help="Only search stored cells matching this filter."),
    k: int = typer.Option(10, help="Neighbours per query cell."),
    metric: str = typer.Option("euclidean", help="euclidean or cosine."),
    approximate: bool = typer.Option(False, help="Use the store's approximate index (build it with --build-index)."),
    build_index: bool = typer.Option(False, help="Build (or rebuild) the approximate index first and report its recall."),
    out: Optional[Path] = typer.Option(None, help="Write every neighbour to .tsv, .parquet or .h5ad."),
    overwrite: OverwriteFile = False,
    show: Optional[list[str]] = typer.Option(None, help="obs columns to summarise among the neighbours (default: all categoricals)."),
    max_print: int = typer.Option(20, help="Query cells whose neighbours are printed."),
) -> None:
    """Find the stored cell states nearest to some cells: per-cell neighbours and who they are."""
    import numpy as np
    import pandas as pd

    from ..store import EmbeddingStore, StoreError
    from ..store.explain import no_match
    from ..store.query import neighbours_anndata, neighbours_frame

    if out is not None and out.suffix not in (".tsv", ".parquet", ".h5ad"):
        fail(f"--out {out}: the suffix must be .tsv, .parquet or .h5ad.")
    try:
        if out is not None:
            refuse_overwriting_input(out, store)
            check_output_file(out, overwrite=overwrite)
        embedding_store = EmbeddingStore(store, mode="a" if build_index else "r")
        state = embedding_store.snapshot(key)
        if build_index:
            info = embedding_store.build_index(key, metric=metric).info
            typer.echo(f"index: {info['library']}, recall@{info['k']} {info['recall_at_k']:.3f} on {info['n_check']} "
                       f"stored cells (ef {info['search_ef']}), built in {info['build_seconds']:.1f} s")
        if cells.startswith("index="):
            names = embedding_store.obs(key, [], state=state).index
            rows = np.flatnonzero(names == cells[len("index="):])
            if rows.size == 0:
                raise StoreError(f"--cells {cells!r}: no stored cell of {key!r} is named so (e.g. {list(names[:3])}).")
        else:
            where = _cells_filter(cells)
            rows = embedding_store.select(key, where, state=state)
            if rows.size == 0:
                raise StoreError(no_match(where, embedding_store.obs(key, state=state), key, what=f"--cells {cells!r}"))
        query_values = embedding_store.values(key, rows, state=state)
        searched = state.n_rows if filter is None else len(embedding_store.select(key, filter, state=state))
        if searched == 0:
            raise StoreError(no_match(filter, embedding_store.obs(key, state=state), key, what=f"--filter {filter!r}"))
        if not 1 <= k < searched:
            raise StoreError(f"--k {k}: it must lie in [1, {searched - 1}] (the cells searched, less the query cell itself).")
        found, distances = embedding_store.nearest(key, query_values, k=k + 1, metric=metric, where=filter,
                                                   approximate=approximate)
        found, distances = _drop_self(found, distances, rows)
        obs = embedding_store.obs(key, state=state)
        names = [str(n) for n in obs.index[rows]]
        if out is not None:
            from ..io import atomic_write, write_h5ad

            if out.suffix == ".h5ad":
                write_h5ad(neighbours_anndata(embedding_store, key, found, distances, query_names=names), out)
            else:
                frame = neighbours_frame(embedding_store, key, found, distances, query_names=names)
                atomic_write(out, lambda tmp: frame.to_csv(tmp, sep="\t", index=False) if out.suffix == ".tsv"
                             else frame.to_parquet(tmp, index=False))
    except ImportError as error:
        fail(f"{error}; writing parquet needs pyarrow: pip install 'virtualcell[parquet]'.")
    except (StoreError, ValueError, KeyError, OSError) as error:
        fail(error)
    typer.echo(f"{len(rows)} query cells, {k} neighbours each (mean distance {distances.mean():.3f}, {metric})")
    for name, row, dist in list(zip(names, found, distances))[:max_print]:
        typer.echo(f"  {name}: " + ", ".join(f"{obs.index[r]} ({d:.3f})" for r, d in zip(row, dist)))
    if len(rows) > max_print:
        typer.echo(f"  ... {len(rows) - max_print} more (--out writes all)")
    neighbours = obs.iloc[found.ravel()]
    columns = show or [c for c in obs.columns if isinstance(obs[c].dtype, pd.CategoricalDtype)]
    for column in columns:
        if column not in obs:
            fail(f"--show {column!r}: no such obs column; columns: {list(obs.columns)}")
        shares = neighbours[column].astype(str).value_counts(normalize=True).head(10)
        typer.echo(f"{column}: " + ", ".join(f"{name} {share:.0%}" for name, share in shares.items()))
    if out is not None:
        typer.echo(f"wrote {found.size} neighbours to {out}")


def _drop_self(found, distances, rows):
    """Remove each query cell from its own neighbours (k + 1 were searched; keep k)."""
    keep = found != rows[:, None]
    keep[keep.all(axis=1), -1] = False  # not found itself: drop the farthest instead
    k = found.shape[1] - 1
    return found[keep].reshape(-1, k), distances[keep].reshape(-1, k)
