"""The annotations of AnnData stores on disk (one file or shards) without their matrix, and without their cell names.

A fit from disk needs ``obs``'s label columns (condition, context, covariates) and ``var``'s gene
names, not the names of millions of cells: held as Python strings those cost ~60 bytes a cell
(120 MB for 2M cells), more than everything else the fit keeps per cell. :func:`read_annotations`
therefore reads the columns asked for (categoricals stay categorical: 1 byte a cell for up to 127
values) into a frame indexed by position (a ``pandas.RangeIndex``: no memory per cell) and only the
first :data:`HEAD_NAMES` cell names (what the data fingerprint hashes). ``names=True`` reads the whole
``obs`` with its names, as ``anndata`` does (small files fitted in memory).

Shards are concatenated in order as ``anndata.concat(join="outer")`` does: a column absent from a shard
is missing (NaN) for its cells, and categoricals with different categories are unified into the union
of the categories in natural sort order. Shards whose genes disagree are refused
(:func:`~virtualcell.train.disk_shards.check_same_genes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .disk_shards import check_same_genes, open_matrix, shard_paths

__all__ = ["Annotations", "read_annotations", "HEAD_NAMES"]

#: cell names read from the start of the data (the data fingerprint hashes the first 1,000)
HEAD_NAMES = 1000


@dataclass(frozen=True)
class Annotations:
    """``obs`` [n_cells, columns] (positional index unless read with names), ``var`` [n_genes, ...] (gene
    names as index) and the first :data:`HEAD_NAMES` cell names, in store order. Duck-types what the fit
    reads of an AnnData: ``obs``, ``var``, ``n_obs``, ``n_vars``, ``shape``, ``var_names``."""

    obs: pd.DataFrame
    var: pd.DataFrame
    head_names: list[str]

    @property
    def n_obs(self) -> int:
        return len(self.obs)

    @property
    def n_vars(self) -> int:
        return len(self.var)

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_obs, self.n_vars

    @property
    def var_names(self) -> pd.Index:
        return self.var.index


def read_annotations(source: Any, columns: Sequence[str] | None = None, *, names: bool = False) -> Annotations:
    """The :class:`Annotations` of ``source`` (a store, a list of shards or a folder of them; module doc).

    ``columns``: the obs columns to read (all when None, or when one of them is absent, so that the
    error that names it can list every column). ``names``: read the whole ``obs`` with every cell name,
    exactly as ``anndata.read_h5ad`` and ``anndata.concat`` give it (for small files)."""
    paths = shard_paths(source)
    if names:
        return _with_names(paths)
    roots = [open_matrix(path)[0] for path in paths]
    present = [_column_order(root["obs"]) for root in roots]
    wanted = None if columns is None else list(dict.fromkeys(columns))
    if wanted is not None and not all(any(c in cols for cols in present) for c in wanted):
        wanted = None
    frames, head = [], []
    for root, cols in zip(roots, present):
        group = root["obs"]
        index = group[str(group.attrs["_index"])]
        keep = [c for c in cols if wanted is None or c in wanted]
        frames.append(pd.DataFrame({c: _read(group[c]) for c in keep}, columns=keep,
                                   index=pd.RangeIndex(int(index.shape[0]))))
        if len(head) < HEAD_NAMES:
            head += _first_names(index, HEAD_NAMES - len(head))
    var = _read(roots[0]["var"])
    if len(paths) > 1:
        check_same_genes([str(p) for p in paths], [[str(v) for v in _read(root["var"]).index] for root in roots])
    var.index = var.index.astype(str)
    return Annotations(_concat(frames) if len(frames) > 1 else frames[0], var, head)


def _with_names(paths: list[Any]) -> Annotations:
    import anndata as ad

    parts = []
    for path in paths:
        root, _ = open_matrix(path)
        parts.append(ad.AnnData(obs=_read(root["obs"]), var=_read(root["var"])))
    if len(parts) > 1:
        check_same_genes([str(p) for p in paths], [[str(v) for v in part.var_names] for part in parts])
        joined = ad.concat(parts, join="outer", merge="first")
        joined.var = parts[0].var.copy()
    else:
        joined = parts[0]
    return Annotations(joined.obs, joined.var, [str(n) for n in joined.obs_names[:HEAD_NAMES]])


def _read(element: Any) -> Any:
    import anndata as ad

    return ad.io.read_elem(element)


def _column_order(group: Any) -> list[str]:
    return [str(c) for c in np.atleast_1d(group.attrs.get("column-order", [])) if str(c)]


def _first_names(index: Any, k: int) -> list[str]:
    """The first ``k`` entries of an obs index element (a string array: read by slice; else read whole)."""
    if str(index.attrs.get("encoding-type", "")) == "string-array":
        head = index.asstr()[:k] if hasattr(index, "asstr") else index[:k]   # h5py stores bytes: decode
        return [str(name) for name in head]
    return [str(name) for name in _read(index)[:k]]


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """``frames`` stacked as ``anndata.concat(join="outer")`` stacks ``obs`` (module doc), positional index."""
    from natsort import natsorted

    columns = list(dict.fromkeys(c for frame in frames for c in frame.columns))
    out = {}
    for column in columns:
        parts = [frame[column] if column in frame else None for frame in frames]
        dtypes = [p.dtype for p in parts if p is not None]
        if all(isinstance(d, pd.CategoricalDtype) and not d.ordered for d in dtypes):
            union = pd.Index([]).append([d.categories for d in dtypes]).unique()
            dtype = pd.CategoricalDtype(natsorted(union), ordered=False)
            codes = [np.full(len(f), -1, np.int8) if p is None else pd.Categorical(p, dtype=dtype).codes
                     for f, p in zip(frames, parts)]
            out[column] = pd.Categorical.from_codes(np.concatenate(codes), dtype=dtype)
        else:
            filled = [pd.Series(np.nan, index=f.index) if p is None else p for f, p in zip(frames, parts)]
            out[column] = pd.concat(filled, ignore_index=True)
    return pd.DataFrame(out, columns=columns, index=pd.RangeIndex(sum(len(f) for f in frames)))
