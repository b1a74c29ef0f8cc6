"""Fit a PerturbationPipeline from an AnnData on disk (h5ad or zarr path, or a backed AnnData).

The expression matrix is never read whole: ``var`` and the ``obs`` columns the fit needs are read into
memory without the cell names (``train.disk_annotations``; conditions stay categorical), the
preprocessing recipe (and its HVGs), the per-(context, condition) means and the latent codes are
computed in streaming passes (``virtualcell.data.streaming``), and the encoder (VAE, PCA) and a learned
decoder (mlp) train from :class:`~virtualcell.train.disk_loader.DiskRows` (``fit_from_disk_components``;
``docs/scale.md``). Memory is bounded by the batch, the model and the latent codes [n_cells, n_latent]
the manipulator is fitted on. A file no larger than one loader pool is read whole (``reads_whole``).
"""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..data.checks import DataError
from ..execution import batched_apply
from ..data.streaming import StreamingGroupMeans, StreamingMoments, batch_recipe, hvg_seurat
from ..train.disk_loader import DiskRows
from .fit_from_disk_components import (DEFAULT_BLOCKS, fit_decoder_from_disk, fit_encoder_from_disk, read_whole,
                                       reads_whole)
from .fit_labels import fit_targets, training_labels

__all__ = ["fit_from_disk", "read_annotations", "is_on_disk", "DiskOptions"]

#: loader settings: ``block_size``/``pool_blocks`` of DiskLoader (None: exact in-memory order), rows per pass
DiskOptions = dict[str, Any]
_PASS_ROWS = 8192


def is_on_disk(data: Any) -> bool:
    """True for a path (str / PathLike: a store or a folder of shards), a list of paths (shards), or a backed
    AnnData: what ``fit`` hands to :func:`fit_from_disk`."""
    if isinstance(data, (list, tuple)) and data:
        return all(isinstance(part, (str, os.PathLike)) for part in data)
    return isinstance(data, (str, os.PathLike)) or bool(getattr(data, "isbacked", False))


def read_annotations(source: Any, columns: Sequence[str] | None = None, *, names: bool = False) -> Any:
    """The stores' ``obs`` (shards concatenated in order; the ``columns`` asked for, all when None; indexed by
    position unless ``names``) and ``var``, without ``X``: an ``Annotations`` (``train.disk_annotations``;
    shards whose genes disagree are refused)."""
    from ..train.disk_annotations import read_annotations as read_store_annotations

    return read_store_annotations(source, columns, names=names)


def _passes(rows: DiskRows, transform: Any = None):
    """Sequential chunks ``(row indices, transformed float32 [b, g])`` over all cells of the file."""
    for begin in range(0, len(rows), _PASS_ROWS):
        index = np.arange(begin, min(begin + _PASS_ROWS, len(rows)))
        raw = rows.read(index)
        yield index, (rows.transformed(raw) if transform is None else transform(raw))


def _choose_genes(pipe: Any, rows: DiskRows, var_names: list[str]) -> list[str]:
    prep = pipe.preprocessing
    if pipe.encoder.is_fitted:
        return list(pipe.encoder.input_features)
    if not prep.n_top_genes or prep.n_top_genes >= len(var_names):
        return var_names
    if prep.hvg_flavor != "seurat":
        raise DataError(f"Fitting from disk computes HVGs with flavor='seurat' only; got {prep.hvg_flavor!r}.")
    moments = StreamingMoments()   # of expm1(log-normalised) = the normalised counts, as scanpy's seurat flavour
    normalised = batch_recipe(prep, var_names, var_names, log_space=False)
    for _, x in _passes(rows, normalised):
        moments.update(x)
    return hvg_seurat(moments.mean, moments.var, var_names, prep.n_top_genes)


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
    annotations = read_annotations(source, keys)
    if reads_whole(disk, annotations.n_obs):   # small file: one pool holds it all, so read it and fit in memory
        pipe.fit(read_whole(source, read_annotations(source, names=True), layer), condition_key=condition_key, control=control,
                 context_key=context_key, covariate_keys=covariate_keys, layer=layer, seed=seed, progress=progress,
                 extra_conditions=extra_conditions)
        pipe.metadata["training"].update(from_disk=True, read_whole=True)
        return pipe
    labels, conditions, contexts = training_labels(annotations, condition_key=condition_key, control=control,
                                                   context_key=context_key, covariate_keys=covariate_keys,
                                                   categorical=True)
    var_names = [str(v) for v in annotations.var_names]
    rows = DiskRows(source, layer=layer, device=pipe.device)
    genes = _choose_genes(pipe, rows, var_names)
    pipe.preprocessing.genes = genes
    rows.transform, rows.n_features = batch_recipe(pipe.preprocessing, var_names, genes), len(genes)
    if not disk.get("exact"):
        rows.loader_options = {"block_size": int(disk.get("block_size", DEFAULT_BLOCKS[0])),
                               "pool_blocks": int(disk.get("pool_blocks", DEFAULT_BLOCKS[1]))}
    rows.checkpoint_every_steps = disk.get("checkpoint_every_steps")

    pipe.encoder.to(pipe.device)
    fit_encoder_from_disk(pipe, rows, genes, seed=seed, progress=progress)

    z, sample = None, None   # codes written into one preallocated [n_cells, d]: no list of parts to fragment the heap
    for index, x in _passes(rows):
        xt = torch.from_numpy(x).to(pipe.device)
        codes = batched_apply(pipe.encoder.encode, xt, batch_size=pipe.batch_size).cpu()
        if z is None:
            z, sample = torch.empty((len(rows), codes.shape[1]), dtype=codes.dtype), xt
        z[int(index[0]):int(index[-1]) + 1] = codes
    z = z.to(pipe.device)
    conditions, condition_ids, context_ids, target = fit_targets(
        pipe, labels, conditions, contexts, annotations, context_key=context_key, covariate_keys=covariate_keys,
        extra=extra_conditions, x=sample, z=z[:sample.shape[0]], genes=genes)
    pipe.response_means = None
    if context_ids is not None:
        means = StreamingGroupMeans(len(conditions), len(contexts), len(genes))
        for index, x in _passes(rows):
            means.update(x, np.asarray(condition_ids)[index], np.asarray(context_ids)[index])
        pipe.response_means = means.result()
    pipe.manipulator.to(pipe.device)
    pipe.manipulator.fit(z, target, n_conditions=len(conditions), n_contexts=len(contexts) if contexts else 0,
                         seed=seed, progress=progress)
    fit_decoder_from_disk(pipe, z, rows, genes, seed=seed, progress=progress)
    pipe.metadata = {
        "condition_key": condition_key, "control": control, "conditions": conditions.labels,
        "context_key": context_key, "contexts": contexts.labels if contexts else None,
        "covariate_keys": list(covariate_keys), "layer": layer, "preprocessing": pipe.preprocessing.to_dict(),
        "training": {"n_cells": int(annotations.n_obs), "n_genes": int(annotations.n_vars), "seed": seed,
                     "data_fingerprint": _fingerprint(annotations), "from_disk": True,
                     "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")},
    }
    return pipe


def _fingerprint(annotations: Any) -> str:
    """The in-memory fit's data fingerprint (shape, first 1,000 cell names, gene names) of the store."""
    digest = hashlib.sha256()
    for part in (str(annotations.shape), "\n".join(map(str, annotations.head_names[:1000])),
                 "\n".join(map(str, annotations.var_names))):
        digest.update(part.encode())
    return digest.hexdigest()
