"""Embedding-store commands: embed, query."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app
from .common import fail, match_rule, read_h5ad

@app.command()
def embed(
    data: Path = typer.Option(..., help=".h5ad with the cells to encode."),
    encoder: Path = typer.Option(..., help="A saved encoder folder, or a saved pipeline folder (its preprocessing is reused)."),
    store: Path = typer.Option(..., help="Embedding store (zarr v3 folder); created when missing."),
    key: str = typer.Option("X_virtualcell", help="Name of the embedding in the store."),
    preprocess: str = typer.Option("none", help="Preprocessing for a bare encoder: 'none', 'log1p' or 'kang-full'."),
    overwrite: bool = typer.Option(False, help="Replace an existing key."),
    device: str = typer.Option("cpu", help="cpu, cuda, mps or auto."),
) -> None:
    """Encode cells into a universal representation and store it (zarr) with its provenance."""
    from ..pipelines import PerturbationPipeline
    from ..pipelines.embed import embed as embed_cells

    try:
        adata = read_h5ad(data)
        model = PerturbationPipeline.load(encoder, device=device) if (encoder / "pipeline.json").exists() else encoder
        embed_cells(adata, model, preprocess=preprocess, key_added=key, store=store, overwrite=overwrite, device=device)
    except (ValueError, KeyError, TypeError, FileNotFoundError) as error:
        fail(error)
    typer.echo(f"stored {adata.n_obs} cells x {adata.obsm[key].shape[1]} dimensions as {key!r} in {store}")


@app.command()
def query(
    store: Path = typer.Option(..., help="Embedding store written by `virtualcell embed`."),
    key: str = typer.Option(..., help="Embedding to search."),
    cells: str = typer.Option(..., help="Query cells by obs: 'key=value[&key=value]', or 'index=<obs name>'."),
    k: int = typer.Option(10, min=1, help="Neighbours per query cell."),
    show: Optional[list[str]] = typer.Option(None, help="obs columns to summarise among the neighbours (default: all categoricals)."),
) -> None:
    """Find the stored cell states nearest to some cells, and summarise who they are."""
    import pandas as pd

    from ..representations.store import EmbeddingStore

    try:
        embedding = EmbeddingStore(store, mode="r").read(key)
        obs = embedding.obs
        if cells.startswith("index="):
            mask = obs.index == cells[len("index="):]
        else:
            mask = match_rule(obs, cells)
        if not mask.any():
            raise ValueError(f"No stored cell matches {cells!r}.")
        indices, distances = EmbeddingStore(store, mode="r").nearest(key, embedding.values[mask], k=k + 1)
    except (ValueError, KeyError) as error:
        fail(error)
    neighbours = obs.iloc[indices[:, 1:].ravel()]
    columns = show or [c for c in obs.columns if isinstance(obs[c].dtype, pd.CategoricalDtype)]
    typer.echo(f"{int(mask.sum())} query cells, {k} neighbours each (mean distance {distances[:, 1:].mean():.3f})")
    for column in columns:
        shares = neighbours[column].astype(str).value_counts(normalize=True).head(10)
        typer.echo(f"{column}: " + ", ".join(f"{name} {share:.0%}" for name, share in shares.items()))
