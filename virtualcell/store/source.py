"""Cells read a chunk of rows at a time from an ``.h5ad`` file, a zarr-stored AnnData or an AnnData.

Files are opened with anndata's element IO (``anndata.io.sparse_dataset`` for a sparse ``X`` or
layer, the backed dataset for a dense one, ``read_elem`` for ``obs``/``var``), the same readers
``anndata.read_h5ad(backed="r")`` uses, so only the rows asked for are read; a chunk is returned as
a small in-memory AnnData [rows, genes] that the preprocessing and the encoder take as usual.

Files in a layout these element readers do not know (the legacy h5ad of anndata < 0.7: ``obs``/``var``
as compound datasets, ``X`` as an ``h5sparse`` group) are opened with ``anndata.read_h5ad(backed="r")``
instead (X still read by rows; obs and var in memory), with a note on stderr; a zarr AnnData in an
unknown layout is read whole with ``anndata.read_zarr``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from .format import StoreError

__all__ = ["ChunkSource", "open_source"]


class ChunkSource:
    """``n_obs`` cells of ``var_names`` genes; :meth:`rows` gives ``[start, stop)`` as an AnnData.

    ``path`` is the file (``None`` for an in-memory AnnData), so a Dask worker can reopen it.
    """

    def __init__(self, matrix: Any, var_names: pd.Index, obs_reader, *, path: str | None, layer: str | None,
                 handle: Any = None) -> None:
        self.matrix, self.var_names, self._obs_reader = matrix, pd.Index(var_names).astype(str), obs_reader
        self.path, self.layer, self._handle = path, layer, handle
        self.n_obs = int(matrix.shape[0])
        if matrix.shape[1] != len(self.var_names):
            raise StoreError(f"{path or 'the AnnData'}: X has {matrix.shape[1]} columns but var has {len(self.var_names)} genes.")

    @property
    def obs(self) -> pd.DataFrame:
        """All cells' obs [n_obs rows] (read when first asked for)."""
        if not hasattr(self, "_obs"):
            self._obs = self._obs_reader()
        return self._obs

    @property
    def n_vars(self) -> int:
        return len(self.var_names)

    def rows(self, start: int, stop: int) -> ad.AnnData:
        """Cells ``start..stop`` (X only, in memory), named by their row numbers."""
        x = self.matrix[start:stop]
        if isinstance(x, ad.AnnData):  # a backed AnnData view
            x = x.X
        x = x if hasattr(x, "tocsr") else np.asarray(x)
        chunk = ad.AnnData(X=x, var=pd.DataFrame(index=self.var_names))
        chunk.obs_names = [str(i) for i in range(start, stop)]
        return chunk

    def close(self) -> None:
        if self._handle is not None and hasattr(self._handle, "close"):
            self._handle.close()


def _element(root, layer: str | None, path: str):
    from anndata.io import sparse_dataset

    if layer is None:
        if "X" not in root:
            raise StoreError(f"{path} has no X; name the layer that holds expression (layer=...).")
        node = root["X"]
    else:
        if "layers" not in root or layer not in root["layers"]:
            known = list(root["layers"].keys()) if "layers" in root else []
            raise StoreError(f"{path} has no layer {layer!r}; its layers are {known}.")
        node = root["layers"][layer]
    encoding = dict(node.attrs).get("encoding-type", "array")
    if encoding in ("csr_matrix", "csc_matrix"):
        return sparse_dataset(node)
    if encoding != "array":
        raise StoreError(f"{path}: expression stored as {encoding!r}, which cannot be read by rows.")
    return node


def _standard(root) -> bool:
    """Whether ``root`` is in the element layout anndata >= 0.7 writes (obs, var and X tagged with their encoding)."""
    for name in ("obs", "var"):
        if name not in root or dict(root[name].attrs).get("encoding-type") != "dataframe":
            return False
    return "X" not in root or "encoding-type" in dict(root["X"].attrs)


def _from_anndata(path: str, layer: str | None) -> ChunkSource:
    """A source over a file in a layout only ``anndata.read_h5ad``/``read_zarr`` understand (see the module docstring)."""
    import warnings

    how = "read_h5ad(backed='r')" if Path(path).is_file() else "read_zarr, in memory"
    print(f"note: {path} is in an older AnnData layout; reading it through anndata ({how}).", file=sys.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata's notices about the legacy layout it converts
        try:
            adata = ad.read_h5ad(path, backed="r") if Path(path).is_file() else ad.read_zarr(path)
        except Exception as error:  # anndata's own readers refused it too
            raise StoreError(f"{path} could not be read as an AnnData ({type(error).__name__}: {error}).") from error
    matrix = adata.X if layer is None else adata.layers.get(layer) if layer in adata.layers else None
    if matrix is None:
        raise StoreError(f"{path} has no {'X' if layer is None else f'layer {layer!r}'}; its layers are {list(adata.layers)}.")
    handle = adata.file if adata.isbacked else None
    return ChunkSource(matrix, adata.var_names, lambda: adata.obs, path=path, layer=layer, handle=handle)


def open_source(data: Any, *, layer: str | None = None) -> ChunkSource:
    """A :class:`ChunkSource` over ``data``: a path to ``.h5ad`` / ``.zarr`` (AnnData) or an AnnData."""
    from anndata.io import read_elem

    if isinstance(data, ad.AnnData):
        matrix = data.X if layer is None else data.layers.get(layer)
        if matrix is None:
            what = "X" if layer is None else f"layer {layer!r}"
            raise StoreError(f"the AnnData has no {what}; its layers are {list(data.layers)}.")
        path = str(data.filename) if data.isbacked else None
        return ChunkSource(matrix, data.var_names, lambda: data.obs, path=path if layer is None else None, layer=layer)
    path = os.fspath(data)
    if not Path(path).exists() and "://" not in path:
        raise StoreError(f"{path} does not exist.")
    if path.endswith(".h5ad") or (Path(path).is_file()):
        import h5py

        try:
            handle = h5py.File(path, "r")
        except OSError as error:
            raise StoreError(f"{path} could not be read as an .h5ad file ({error}); is it complete?") from error
        root = handle
        if not _standard(root):
            handle.close()
            return _from_anndata(path, layer)
    else:
        import zarr

        try:
            root = handle = zarr.open_group(path, mode="r")
        except Exception as error:  # zarr's not-found / not-a-group errors
            raise StoreError(f"{path} is not a zarr-stored AnnData ({error}).") from error
        if not _standard(root):
            return _from_anndata(path, layer)
    try:
        matrix = _element(root, layer, path)
        var_names = pd.Index(read_elem(root["var"]).index)
    except KeyError as error:
        raise StoreError(f"{path} is not an AnnData written by anndata (missing {error}).") from error
    return ChunkSource(matrix, var_names, lambda: read_elem(root["obs"]), path=path, layer=layer, handle=handle)
