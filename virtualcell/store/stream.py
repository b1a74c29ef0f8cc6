"""Streaming embedding: an atlas through an encoder into the store, one chunk of cells at a time.

Per chunk: read rows (:mod:`.source`), apply the recipe (``normalize_total`` and ``log1p`` are
row-local; the genes were chosen when the pipeline was fitted), encode, write the rows into the
key. Peak memory is a chunk (dense [chunk_rows, genes] float32 plus the encoder's activations),
not the atlas; the row count becomes visible only when every chunk is written (see :mod:`.append`).
With ``client=`` the chunks are mapped over Dask workers instead (:mod:`.dask_embed`); both encode
through :mod:`.encode`.
"""

from __future__ import annotations

from typing import Any

from ..component import Encoder
from ..data.preprocess import Preprocessing
from ..execution import resolve_device
from .encode import encode_chunk, provenance_of
from .format import Snapshot, StoreError
from .source import open_source

__all__ = ["stream_embed"]


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
            writer.check_new_names(obs.index)  # before encoding: the same cells appended twice are refused
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
