"""``embed``: cells -> universal representation, in ``obsm`` (in memory) or streamed into an EmbeddingStore.

In memory (an AnnData): ``obsm[key_added]`` [n, d] and provenance in ``uns[key_added]``, optionally
also written to a store. Streaming (a path to ``.h5ad``/zarr AnnData, a backed AnnData,
``stream=True`` or a Dask ``client``): chunk by chunk into the store only, peak memory a chunk
(:mod:`virtualcell.store.stream`, :mod:`virtualcell.store.encode`).
"""

from __future__ import annotations

import os
from typing import Any

import anndata as ad
import torch

from ..component import Encoder
from ..data.preprocess import Preprocessing
from ..execution import batched_apply, resolve_device
from ..store.encode import provenance_of, weights_sha256

__all__ = ["embed", "weights_sha256", "encoder_with_recipe"]


def encoder_with_recipe(encoder: Any, preprocess: Any = None, layer: str | None = None
                        ) -> tuple[Encoder, Preprocessing, str | None]:
    """(encoder, recipe, layer) from a fitted pipeline (its recorded recipe and layer) or from anything
    :func:`~virtualcell.pipelines.annotate.resolve_encoder` takes (with ``preprocess`` and ``layer``)."""
    from ..pipelines.perturbation import PerturbationPipeline
    from .annotate import resolve_encoder

    if isinstance(encoder, PerturbationPipeline):
        encoder._check_fitted()
        recipe = Preprocessing.from_spec(encoder.metadata["preprocessing"])
        return encoder.encoder, recipe, encoder.metadata.get("layer") if layer is None else layer
    return resolve_encoder(encoder), Preprocessing.from_spec(preprocess), layer


def embed(adata: Any, encoder: Any, *, preprocess: Any = None, layer: str | None = None,
          key_added: str = "X_virtualcell", store: Any = None, overwrite: bool = False, append: bool = False,
          stream: bool | None = None, client: Any = None, chunk_rows: int = 8192, batch_size: int = 4096,
          device: str = "cpu", progress: bool = False, copy: bool = False):
    """Encode every cell of ``adata`` into ``obsm[key_added]`` [n, d] (provenance in ``uns``) or into ``store``.

    Args:
        adata: an AnnData, or a path to an ``.h5ad`` / zarr AnnData (streamed: never loaded whole).
        encoder: a fitted ``Encoder``, an artifact folder of one, or a fitted ``PerturbationPipeline``
            (whose recorded preprocessing and layer are then applied).
        preprocess: preprocessing recipe for a bare encoder (see ``Preprocessing.from_spec``).
        store: an ``EmbeddingStore`` or a path; the embedding is also written there as ``key_added``.
        stream: encode chunk by chunk into ``store`` only (default: for paths, backed AnnData or ``client``).
        client: a ``dask.distributed.Client``: chunks are encoded on its workers (``adata`` must be a path).
        append: add the cells to an existing store key.
        copy: return a modified copy instead of writing into ``adata`` (in memory only).
    Returns ``None`` (or the copy) in memory; the store key's :class:`~virtualcell.store.Snapshot` when streaming.
    """
    from ..store import EmbeddingStore
    from ..store.stream import stream_embed

    module, recipe, layer = encoder_with_recipe(encoder, preprocess, layer)
    in_memory = isinstance(adata, ad.AnnData) and not adata.isbacked
    if stream is None:
        stream = client is not None or not in_memory
    if stream:
        if store is None:
            raise ValueError("Streaming embeds into a store: pass store=... (a zarr folder).")
        if copy:
            raise ValueError("copy=True needs the embedding in memory; streaming writes it to the store only.")
        return stream_embed(adata, module, store, key_added, preprocess=recipe, layer=layer, chunk_rows=chunk_rows,
                            batch_size=batch_size, device=device, overwrite=overwrite, append=append,
                            client=client, progress=progress)
    if not isinstance(adata, ad.AnnData):
        raise TypeError(f"embed takes an AnnData or a path; got {type(adata).__name__}.")
    x = torch.from_numpy(recipe.transform(adata, layer=layer, genes=module.input_features))
    module.to(resolve_device(device))
    with torch.no_grad():
        z = batched_apply(module.encode, x.to(resolve_device(device)), batch_size=batch_size).cpu().numpy()
    provenance = provenance_of(module, recipe.to_dict() | {"genes": None}, n_obs=adata.n_obs, n_vars=adata.n_vars,
                               obs_names=adata.obs_names)
    if store is not None:
        store = store if isinstance(store, EmbeddingStore) else EmbeddingStore(os.fspath(store))
        if append:
            store.append(key_added, z, obs=adata.obs, provenance=provenance)
        else:
            store.write(key_added, z, obs=adata.obs, provenance=provenance, overwrite=overwrite)
    out = adata.copy() if copy else adata
    out.obsm[key_added] = z
    out.uns[key_added] = provenance
    return out if copy else None
