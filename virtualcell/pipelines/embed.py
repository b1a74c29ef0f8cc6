"""``embed``: AnnData -> universal representation in ``obsm`` (and optionally an EmbeddingStore)."""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

import anndata as ad
import torch

from ..component import Encoder
from ..data.preprocess import Preprocessing
from ..execution import batched_apply, resolve_device

__all__ = ["embed", "weights_sha256"]


def weights_sha256(module: torch.nn.Module) -> str:
    """A content hash of a module's tensors (names, shapes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def embed(adata: ad.AnnData, encoder: Any, *, preprocess: Any = None, layer: str | None = None,
          key_added: str = "X_virtualcell", store: Any = None, overwrite: bool = False,
          batch_size: int = 4096, device: str = "cpu", copy: bool = False) -> ad.AnnData | None:
    """Encode every cell of ``adata`` into ``obsm[key_added]`` [n, d], provenance in ``uns[key_added]``.

    Args:
        encoder: a fitted ``Encoder``, an artifact folder of one, or a fitted ``PerturbationPipeline``
            (whose recorded preprocessing is then applied).
        preprocess: preprocessing recipe for a bare encoder (see ``Preprocessing.from_spec``).
        store: an ``EmbeddingStore`` or a path; the embedding is also written there as ``key_added``.
        copy: return a modified copy instead of writing into ``adata``.
    """
    from ..pipelines.perturbation import PerturbationPipeline
    from ..registry import load_component
    from ..representations.store import EmbeddingStore

    if isinstance(encoder, PerturbationPipeline):
        pipeline, encoder_module = encoder, encoder.encoder
        x = pipeline.prepare(adata, layer)
        recipe = pipeline.metadata["preprocessing"]
    else:
        encoder_module = encoder if isinstance(encoder, Encoder) else load_component(encoder)
        if not isinstance(encoder_module, Encoder):
            raise TypeError(f"embed needs an encoder; {type(encoder_module).__name__} is a {encoder_module.kind}.")
        prep = Preprocessing.from_spec(preprocess)
        x = torch.from_numpy(prep.transform(adata, layer=layer, genes=encoder_module.input_features))
        recipe = prep.to_dict() | {"genes": None}
    target = resolve_device(device)
    encoder_module.to(target)
    z = batched_apply(encoder_module.encode, x.to(target), batch_size=batch_size).cpu().numpy()
    genes = "\n".join(encoder_module.input_features)
    provenance = {
        "component": type(encoder_module).__name__,
        "config": encoder_module.config_json(),
        "weights_sha256": weights_sha256(encoder_module),
        "genes_sha256": hashlib.sha256(genes.encode()).hexdigest(),
        "n_genes": len(encoder_module.input_features),
        "preprocessing": str(recipe),
        "source_data": {"n_obs": int(adata.n_obs), "n_vars": int(adata.n_vars),
                        "obs_names_sha256": hashlib.sha256("\n".join(map(str, adata.obs_names)).encode()).hexdigest()},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if store is not None:
        store = store if isinstance(store, EmbeddingStore) else EmbeddingStore(store)
        store.write(key_added, z, obs=adata.obs, provenance=provenance, overwrite=overwrite)
    out = adata.copy() if copy else adata
    out.obsm[key_added] = z
    out.uns[key_added] = provenance
    return out if copy else None
