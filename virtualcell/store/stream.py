"""Streaming embedding: an atlas through an encoder into the store, one chunk of cells at a time.

Per chunk: read rows (:mod:`.source`), apply the recipe (``normalize_total`` and ``log1p`` are
row-local; the genes were chosen when the pipeline was fitted), encode, write the rows into the
key. Peak memory is a chunk (dense [chunk_rows, genes] float32 plus the encoder's activations),
not the atlas; the row count becomes visible only when every chunk is written (see :mod:`.append`).
With ``client=`` the chunks are mapped over Dask workers instead (:mod:`.dask_embed`).
"""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

import numpy as np
import torch

from ..component import Encoder
from ..data.preprocess import Preprocessing
from ..execution import batched_apply, resolve_device
from .format import Snapshot, StoreError
from .source import ChunkSource, open_source

__all__ = ["stream_embed", "encode_chunk", "provenance_of", "weights_sha256"]


def weights_sha256(module: torch.nn.Module) -> str:
    """A content hash of a module's tensors (names, shapes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def provenance_of(encoder: Encoder, recipe: dict, *, n_obs: int, n_vars: int, obs_names) -> dict[str, Any]:
    """What made an embedding: the component, its config and weights hash, genes, recipe, source."""
    genes = "\n".join(encoder.input_features)
    return {
        "component": type(encoder).__name__,
        "config": encoder.config_json(),
        "weights_sha256": weights_sha256(encoder),
        "genes_sha256": hashlib.sha256(genes.encode()).hexdigest(),
        "n_genes": len(encoder.input_features),
        "preprocessing": str(recipe),
        "source_data": {"n_obs": int(n_obs), "n_vars": int(n_vars),
                        "obs_names_sha256": hashlib.sha256("\n".join(map(str, obs_names)).encode()).hexdigest()},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def encode_chunk(chunk, encoder: Encoder, recipe: Preprocessing, *, batch_size: int = 4096,
                 device: str = "cpu") -> np.ndarray:
    """``chunk`` (AnnData [c, genes]) -> float32 [c, n_latent] through ``recipe`` and ``encoder``."""
    x = recipe.transform(chunk, genes=encoder.input_features)
    with torch.no_grad():
        z = batched_apply(encoder.encode, torch.from_numpy(x).to(resolve_device(device)), batch_size=batch_size)
    return z.detach().cpu().numpy().astype(np.float32, copy=False)


def stream_embed(data: Any, encoder: Encoder, store: Any, key: str, *, preprocess: Any = None,
                 layer: str | None = None, chunk_rows: int = 8192, batch_size: int = 4096, device: str = "cpu",
                 overwrite: bool = False, append: bool = False, client: Any = None, progress: bool = True,
                 provenance: dict | None = None) -> Snapshot:
    """Encode every cell of ``data`` (path to ``.h5ad``/zarr AnnData, or an AnnData) into ``store[key]``.

    Args:
        encoder: a fitted ``Encoder``.
        preprocess: the recipe (``Preprocessing``, preset name or dict); its genes, if fitted, are ignored
            in favour of the encoder's ``input_features``.
        chunk_rows: cells per chunk (also the store's rows per zarr chunk, so Dask regions align).
        client: a ``dask.distributed.Client``: chunks are encoded on its workers (``data`` must be a path).
        append: add the cells to an existing key instead of creating it.
    Returns the key's committed :class:`~.format.Snapshot`.
    """
    from tqdm.auto import tqdm

    from .embedding_store import EmbeddingStore

    if not isinstance(encoder, Encoder):
        raise TypeError(f"stream_embed needs a fitted Encoder; got {type(encoder).__name__}.")
    encoder._check_fitted()
    recipe = Preprocessing.from_spec(preprocess)
    store = store if isinstance(store, EmbeddingStore) else EmbeddingStore(store)
    source = open_source(data, layer=layer)
    chunk_rows = max(int(chunk_rows), 1)
    try:
        missing = sorted(set(encoder.input_features) - set(source.var_names))
        if missing:
            raise StoreError(f"the data lacks {len(missing)} of the encoder's genes, e.g. {missing[:10]}.")
        obs = source.obs
        meta = provenance_of(encoder, recipe.to_dict() | {"genes": None}, n_obs=source.n_obs,
                             n_vars=source.n_vars, obs_names=obs.index) | dict(provenance or {})
        if client is not None:
            from .dask_embed import dask_embed

            return dask_embed(source, encoder, recipe, store, key, obs=obs, provenance=meta, client=client,
                              chunk_rows=chunk_rows, batch_size=batch_size, overwrite=overwrite, append=append,
                              progress=progress)
        encoder.to(resolve_device(device))
        with store.writer(key, dim=encoder.n_latent, provenance=meta, overwrite=overwrite, append=append,
                          chunk_rows=chunk_rows) as writer:
            start = writer.reserve(source.n_obs)
            with tqdm(total=source.n_obs, desc=f"embedding into {key}", unit="cells", disable=not progress) as bar:
                for first in range(0, source.n_obs, chunk_rows):
                    chunk = source.rows(first, min(first + chunk_rows, source.n_obs))
                    writer.write_rows(start + first, encode_chunk(chunk, encoder, recipe, batch_size=batch_size,
                                                                  device=device))
                    bar.update(chunk.n_obs)
            return writer.commit(obs, provenance=meta)
    finally:
        source.close()


def check_source_for_workers(source: ChunkSource) -> str:
    """The path Dask workers reopen ``source`` from, or an error saying to save the AnnData first."""
    if source.path is None:
        raise StoreError("Dask workers read the cells themselves: give a path to an .h5ad or zarr AnnData "
                         "(adata.write_h5ad(...) first), not an in-memory AnnData.")
    return source.path
