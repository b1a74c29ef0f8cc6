"""AnnData stores on disk as one dataset: one file, a list of shards, or a folder of them; and each store's identity.

Atlases come as many files (Tahoe-100M: one per plate). :func:`shard_paths` turns what the user
passed (a path, a backed AnnData, a list of paths, or a folder holding ``*.h5ad`` / ``*.zarr`` shards,
taken in name order) into the list of stores; :class:`Shard` reads one store's matrix (h5ad or zarr,
CSR or dense) by row ranges; :func:`check_same_genes` checks that every shard has the same genes in the
same order (else a :class:`DiskDataError` naming the shard, its missing genes and the anndata lines that
fix it). The shards' annotations are read by :mod:`.disk_annotations`.

A store's *identity* (:func:`store_identity`) is cheap to take and changes when the file does: the
size and modification time of an ``.h5ad`` file, or of a zarr matrix's metadata files and folders. A
:class:`Shard` records it when opened and :meth:`Shard.check_unchanged` compares it before reads, so a
file rewritten, appended to or replaced while training stops the run with an error instead of training
on a mix of two files (an open HDF5 handle keeps reading the old file after a replace).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import DataError

__all__ = ["DiskDataError", "Shard", "shard_paths", "open_matrix", "store_identity", "check_same_genes",
           "is_zarr_store"]

_INDPTR_IN_MEMORY = 20_000_000  # cells: up to this many, the CSR row pointer (8 bytes/cell) is cached
_ZARR_METADATA = (".zarray", ".zattrs", ".zgroup", "zarr.json")
_SHOWN = 5                      # genes named in a mismatch message


class DiskDataError(DataError):
    """An on-disk store that cannot be trained on as it is (changed while training, shards that disagree);
    the message names the file and the fix."""


def is_zarr_store(path: Path) -> bool:
    """True for a folder that is itself a zarr store (not a folder of shards)."""
    return path.is_dir() and any((path / name).exists() for name in _ZARR_METADATA)


def shard_paths(source: Any) -> list[Path]:
    """The stores of ``source``: a path (``.h5ad`` file or ``.zarr`` folder), a backed AnnData, a list of
    those, or a folder of ``*.h5ad`` / ``*.zarr`` shards (in name order)."""
    if isinstance(source, (list, tuple)):
        if not source:
            raise ValueError("An empty list of shards; pass one or more .h5ad / .zarr paths.")
        return [path for part in source for path in _one_store(part, listed=True)]
    return _one_store(source, listed=False)


def _one_store(source: Any, *, listed: bool) -> list[Path]:
    if hasattr(source, "isbacked"):
        if not source.isbacked:
            raise ValueError("Training from disk needs a path or a backed AnnData (anndata.read_h5ad(path, "
                             "backed='r')); an in-memory AnnData is already in memory: use it directly.")
        source = source.filename
    path = Path(os.fspath(source))
    if not path.exists():
        raise FileNotFoundError(f"No AnnData store at {path}; pass the path of an .h5ad file or a .zarr folder"
                                " (or a folder of them).")
    if not path.is_dir() or is_zarr_store(path):
        return [path]
    if listed:
        raise ValueError(f"{path} is a folder, not an AnnData store; list its .h5ad / .zarr files, or pass the "
                         "folder alone to train on every shard in it.")
    shards = sorted(p for p in path.iterdir() if p.suffix in (".h5ad", ".zarr") and not p.name.startswith("."))
    if not shards:
        raise FileNotFoundError(f"{path} is a folder without .h5ad or .zarr shards (and is not a zarr store); "
                                "pass an AnnData file, or a folder of them.")
    return shards


def open_matrix(source: Any, layer: str | None = None) -> tuple[Any, Any]:
    """``(root group, matrix element)`` of one h5ad/zarr path or a backed AnnData (h5py/zarr, read-only)."""
    (path,) = _one_store(source, listed=True)
    if path.is_dir():
        import zarr

        root = zarr.open_group(str(path), mode="r")
    else:
        import h5py

        root = h5py.File(path, "r")
    key = _matrix_key(layer)
    if key not in root:
        raise KeyError(f"{path} has no {key!r}; pass layer=None for X or one of its layers.")
    return root, root[key]


def _matrix_key(layer: str | None) -> str:
    return "X" if layer is None else f"layers/{layer}"


def store_identity(path: Path, layer: str | None = None) -> list[int]:
    """Size and modification time (ns) of an ``.h5ad`` file, or of the metadata files and folders of a zarr
    store's matrix: cheap (a few ``stat`` calls) and different once the store is rewritten or appended to."""
    if not path.is_dir():
        st = path.stat()
        return [st.st_size, st.st_mtime_ns]
    matrix = path / _matrix_key(layer)
    folders = [path, matrix, *sorted(p for p in matrix.iterdir() if p.is_dir())] if matrix.is_dir() else [path]
    identity: list[int] = []
    for folder in folders:
        identity.append(folder.stat().st_mtime_ns)
        for name in _ZARR_METADATA:
            if (folder / name).exists():
                st = (folder / name).stat()
                identity += [st.st_size, st.st_mtime_ns]
    return identity


class Shard:
    """One store's matrix (``X`` or a layer), read by row ranges; remembers the store's identity."""

    def __init__(self, path: Path, layer: str | None = None) -> None:
        self.path, self.layer = path, layer
        self.identity = store_identity(path, layer)
        self.root, element = open_matrix(path, layer)
        encoding = str(element.attrs.get("encoding-type", "array"))
        if encoding == "csc_matrix":
            raise ValueError(f"{path}: the matrix is stored CSC (column-major): every row read would scan the "
                             "whole file. Rewrite it as CSR: adata.X = scipy.sparse.csr_matrix(adata.X); "
                             "adata.write_h5ad(path).")
        self.sparse = encoding == "csr_matrix"
        if self.sparse:
            self.data, self.indices = element["data"], element["indices"]
            self.shape = tuple(int(s) for s in element.attrs["shape"])
            ptr = element["indptr"]
            self.indptr = ptr[:] if self.shape[0] <= _INDPTR_IN_MEMORY else ptr
        else:
            self.dense = element
            self.shape = tuple(int(s) for s in element.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def var_names(self) -> list[str]:
        import anndata as ad

        return [str(v) for v in ad.io.read_elem(self.root["var"]).index]

    def check_unchanged(self) -> None:
        """Raise :class:`DiskDataError` when the store on disk is no longer the one opened."""
        try:
            now = store_identity(self.path, self.layer)
        except OSError:
            now = None
        if now != self.identity:
            raise DiskDataError(
                f"{self.path} changed while training (its size or modification time is not what it was when "
                "training opened it): the rows read from now on would come from another file. Restore the "
                "file as it was and restart from the last checkpoint, or restart the fit from scratch on the "
                "new file (a checkpoint written on the old file is refused).")

    def read_run(self, begin: int, end: int) -> Any:
        """Rows ``begin:end``: CSR (float32 values) or a dense float32 ndarray."""
        if not self.sparse:
            return np.asarray(self.dense[begin:end], dtype=np.float32)
        ptr = np.asarray(self.indptr[begin:end + 1], dtype=np.int64)
        lo, hi = int(ptr[0]), int(ptr[-1])
        data = np.asarray(self.data[lo:hi], dtype=np.float32)
        indices = np.asarray(self.indices[lo:hi])
        return sp.csr_matrix((data, indices, ptr - lo), shape=(end - begin, self.shape[1]))


def check_same_genes(names: Sequence[str], var_lists: Sequence[Sequence[str]]) -> None:
    """Raise :class:`DiskDataError` unless every shard has the first shard's genes in the same order."""
    reference = list(var_lists[0])
    for name, genes in zip(names[1:], var_lists[1:]):
        genes = list(genes)
        if genes == reference:
            continue
        present = set(genes)
        missing = [g for g in reference if g not in present]
        extra = [g for g in genes if g not in set(reference)]
        if missing or extra:
            what = (f"lacks {len(missing)} of them ({_some(missing)})" if missing else "") + \
                   (" and " if missing and extra else "") + \
                   (f"has {len(extra)} others ({_some(extra)})" if extra else "")
        else:
            what = "has them in another order"
        raise DiskDataError(
            f"Shard {name} does not have the genes of {names[0]} ({len(reference)} genes): it {what}. Every shard "
            "needs the same genes in the same order. Fix it with anndata, e.g. subset and reorder every shard to "
            "the genes they all share: genes = [g for g in first.var_names if all(g in a.var_names for a in "
            "shards)]; a[:, genes].copy().write_h5ad(new_path) for each shard a = anndata.read_h5ad(path), "
            "then train on the new files.")


def _some(genes: list[str]) -> str:
    shown = ", ".join(genes[:_SHOWN])
    return shown + (", ..." if len(genes) > _SHOWN else "")
