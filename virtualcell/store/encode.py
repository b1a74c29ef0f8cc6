"""The streaming encoder: one chunk of cells through the recipe and an encoder, and what made an embedding.

Used by the in-process stream (:mod:`.stream`) and by Dask workers (:mod:`.dask_embed`) alike.
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
from .format import StoreError
from .source import ChunkSource

__all__ = ["encode_chunk", "provenance_of", "weights_sha256", "check_source_for_workers"]


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


def check_source_for_workers(source: ChunkSource) -> str:
    """The path Dask workers reopen ``source`` from, or an error saying to save the AnnData first."""
    if source.path is None:
        raise StoreError("Dask workers read the cells themselves: give a path to an .h5ad or zarr AnnData "
                         "(adata.write_h5ad(...) first), not an in-memory AnnData.")
    return source.path
