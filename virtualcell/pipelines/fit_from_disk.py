"""Fit a PerturbationPipeline from an AnnData on disk (h5ad or zarr path, or a backed AnnData).

The expression matrix is never read whole: ``var`` and the ``obs`` columns the fit needs are read into
memory without the cell names (``train.disk_annotations``; conditions stay categorical), the
preprocessing recipe (and its HVGs), the per-(context, condition) means and the latent codes are
computed in streaming passes (``virtualcell.data.streaming``), and the encoder (VAE, PCA, transformer) and a learned
decoder (mlp) train from :class:`~virtualcell.train.disk_loader.DiskRows` (``fit_from_disk_components``;
``docs/scale.md``). Memory is bounded by the batch, the model and, unless the manipulator is fitted on group
sums of the codes (``fit_from_disk_codes``: they are streamed), the latent codes [n_cells, n_latent]. A file
no larger than one loader pool is read whole (``reads_whole``).
"""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import numpy as np

from ..data.checks import DataError
from ..data.streaming import batch_recipe
from ..train.disk_cells import DiskCells
from ..train.disk_loader import DiskRows
from .fit_from_disk_codes import CodesPass, int32_labels
from .fit_from_disk_components import (DEFAULT_BLOCKS, fit_decoder_from_disk, fit_encoder_from_disk, reads_whole,
                                       streams_codes)
from .fit_labels import fit_targets, training_labels
from .preprocess_on_disk import recipe_genes

__all__ = ["fit_from_disk", "read_annotations", "is_on_disk", "DiskOptions"]

#: loader settings: ``block_size``/``pool_blocks`` of DiskLoader (None: exact in-memory order)
DiskOptions = dict[str, Any]


def is_on_disk(data: Any) -> bool:
    """True for a path (str / PathLike: a store or a folder of shards), a list of paths (shards), a backed
    AnnData or :class:`~virtualcell.train.disk_cells.DiskCells`: what ``fit`` hands to :func:`fit_from_disk`."""
    if isinstance(data, DiskCells):
        return True
    if isinstance(data, (list, tuple)) and data:
        return all(isinstance(part, (str, os.PathLike)) for part in data)
    return isinstance(data, (str, os.PathLike)) or bool(getattr(data, "isbacked", False))


def read_annotations(source: Any, columns: Sequence[str] | None = None, *, names: bool = False) -> Any:
    """The stores' ``obs`` (shards concatenated in order; the ``columns`` asked for, all when None; indexed by
    position unless ``names``) and ``var``, without ``X``: an ``Annotations`` (``train.disk_annotations``;
    shards whose genes disagree are refused)."""
    from ..train.disk_annotations import read_annotations as read_store_annotations

    return read_store_annotations(source, columns, names=names)


def _choose_genes(pipe: Any, rows: DiskRows, var_names: list[str]) -> list[str]:
    """A fitted encoder's genes, else the recipe's (its HVGs by a streamed pass)."""
    if pipe.encoder.is_fitted:
        return list(pipe.encoder.input_features)
    return recipe_genes(pipe.preprocessing, rows, var_names)


def fit_from_disk(pipe: Any, source: Any, *, condition_key: str = "condition", control: str = "control",
                  context_key: str | None = None, covariate_keys: Sequence[str] = (), layer: str | None = None,
                  seed: int = 0, progress: bool = True, extra_conditions: Sequence[str] = (),
                  disk: DiskOptions | None = None) -> Any:
    """Fit ``pipe`` (a PerturbationPipeline) on the AnnData store ``source``; arguments as ``pipe.fit``.

    ``disk``: ``{"block_size": 64, "pool_blocks": 64}`` trains on shuffled blocks of rows (fast
    reads, the default); ``{"exact": True}`` reads each minibatch's rows in the in-memory order
    (the same numbers as ``fit`` on the AnnData in memory, slower). ``"exact"`` unset and a file of
    at most ``block_size * pool_blocks`` cells (one process): read whole and fitted as in memory
    (:func:`~virtualcell.pipelines.fit_from_disk_components.reads_whole`; ``"exact": False`` forces
    blocks). ``"checkpoint_every_steps"`` adds mid-epoch checkpoints (with the encoder's ``checkpoint_dir``).
    """
    disk = dict(disk or {})
    if pipe.manipulator.requires_context and not context_key:
        raise DataError(f"{type(pipe.manipulator).__name__} needs context_key (e.g. 'cell_type').")
    keys = [condition_key, context_key, *covariate_keys] if context_key else None   # None: all (context hint)
    cells = source if isinstance(source, DiskCells) else DiskCells.open(source, keys, layer=layer)
    annotations, layer = cells.annotations, cells.layer
    if reads_whole(disk, annotations.n_obs):   # small file: one pool holds it all, so read it and fit in memory
        whole = (cells if isinstance(source, DiskCells) else DiskCells.open(source, layer=layer, names=True)).to_memory()
        pipe.fit(whole, condition_key=condition_key, control=control, context_key=context_key,
                 covariate_keys=covariate_keys, layer=layer, seed=seed, progress=progress,
                 extra_conditions=extra_conditions)
        pipe.metadata["training"].update(from_disk=True, read_whole=True)
        return pipe
    labels, conditions, contexts = training_labels(annotations, condition_key=condition_key, control=control,
                                                   context_key=context_key, covariate_keys=covariate_keys,
                                                   categorical=True)
    var_names = [str(v) for v in annotations.var_names]
    rows = cells.reader(device=pipe.device)
    genes = _choose_genes(pipe, rows, var_names)
    pipe.preprocessing.genes = genes
    rows.transform, rows.n_features = batch_recipe(pipe.preprocessing, var_names, genes), len(genes)
    if not disk.get("exact"):
        rows.loader_options = {"block_size": int(disk.get("block_size", DEFAULT_BLOCKS[0])),
                               "pool_blocks": int(disk.get("pool_blocks", DEFAULT_BLOCKS[1]))}
    rows.checkpoint_every_steps = disk.get("checkpoint_every_steps")

    pipe.encoder.to(pipe.device)
    fit_encoder_from_disk(pipe, rows, genes, seed=seed, progress=progress)
    stream = streams_codes(pipe)
    encoded = CodesPass(pipe, rows)   # the first chunk read and encoded: the sample the parts are checked on
    conditions, target = itemgetter(0, 3)(fit_targets(
        pipe, labels, conditions, contexts, annotations, context_key=context_key, covariate_keys=covariate_keys,
        extra=extra_conditions, x=encoded.x, z=encoded.z, genes=genes))
    target = int32_labels(target) if stream else target   # streamed: int32 ids, the int64 ones let go
    z = encoded.fit(target, n_conditions=len(conditions), n_contexts=len(contexts) if contexts else 0, stream=stream,
                    seed=seed, progress=progress)
    del target, encoded
    fit_decoder_from_disk(pipe, z, rows, genes, seed=seed, progress=progress)
    pipe.metadata = {
        "condition_key": condition_key, "control": control, "conditions": conditions.labels,
        "context_key": context_key, "contexts": contexts.labels if contexts else None,
        "covariate_keys": list(covariate_keys), "layer": layer, "preprocessing": pipe.preprocessing.to_dict(),
        "training": {"n_cells": int(annotations.n_obs), "n_genes": int(annotations.n_vars), "seed": seed,
                     "data_fingerprint": _fingerprint(cells), "from_disk": True,
                     "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")},
    }
    return pipe


def _fingerprint(cells: DiskCells) -> str:
    """The in-memory fit's data fingerprint (shape, first 1,000 cell names, gene names) of the store; for a
    selection of its rows, also the rows selected."""
    annotations = cells.annotations
    digest = hashlib.sha256()
    for part in (str(annotations.shape), "\n".join(map(str, annotations.head_names[:1000])),
                 "\n".join(map(str, annotations.var_names))):
        digest.update(part.encode())
    if cells.rows is not None:
        digest.update(np.ascontiguousarray(cells.rows, dtype=np.int64).tobytes())
    return digest.hexdigest()
