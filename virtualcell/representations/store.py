"""EmbeddingStore: cell representations on disk in zarr v3, self-describing and versioned.

```
cells.zarr/                 attrs: encoding-type "virtualcell.embedding-store", encoding-version
  <key>/ values [n, d] float32 (row-chunked)
         obs/<column>       arrays; categoricals as <column>/codes + <column>/categories
         attrs: encoding-type "virtualcell.embedding", encoding-version, provenance
```
Readers dispatch on (encoding-type, encoding-version), as anndata's IO registry does; an unknown
version asks to upgrade virtualcell. A key is written under a temporary name and renamed into place,
so a failed write never leaves a half-written embedding behind (on local stores).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["EmbeddingStore", "Embedding", "StoreError"]

STORE_TYPE, EMBEDDING_TYPE, VERSION = "virtualcell.embedding-store", "virtualcell.embedding", "0.1.0"


class StoreError(ValueError):
    """A store or key that cannot be read or written as asked."""


@dataclasses.dataclass
class Embedding:
    """``values`` [n, d] float32 with per-cell ``obs`` and the ``provenance`` of how it was made."""

    values: np.ndarray
    obs: pd.DataFrame
    provenance: dict[str, Any]


def _write_strings(group, name: str, values) -> None:
    """Variable-length UTF-8 strings (zarr v3's ``string`` data type)."""
    values = np.asarray([str(v) for v in values], dtype=object)
    array = group.create_array(name, shape=values.shape, dtype=str)
    if values.size:
        array[:] = values


def _write_obs(group, obs: pd.DataFrame) -> None:
    for column in obs.columns:
        series = obs[column]
        if isinstance(series.dtype, pd.CategoricalDtype):
            sub = group.create_group(str(column))
            sub.attrs["encoding-type"] = "categorical"
            sub.create_array("codes", data=series.cat.codes.to_numpy().astype(np.int32))
            _write_strings(sub, "categories", series.cat.categories)
        elif pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
            group.create_array(str(column), data=series.to_numpy())
        else:
            _write_strings(group, str(column), series)
    group.attrs["column-order"] = [str(c) for c in obs.columns]
    group.attrs["index"] = "_index"
    _write_strings(group, "_index", obs.index)


def _read_obs(group) -> pd.DataFrame:
    columns = {}
    for name in group.attrs.get("column-order", []):
        node = group[name]
        if hasattr(node, "attrs") and node.attrs.get("encoding-type") == "categorical":
            columns[name] = pd.Categorical.from_codes(node["codes"][:], categories=list(node["categories"][:]))
        else:
            values = node[:]
            # text as the running pandas stores it by default (object under pandas 2, its string dtype under 3)
            columns[name] = pd.Series(values, dtype=str).array if values.dtype.kind in "OUST" else values
    return pd.DataFrame(columns, index=pd.Index(group["_index"][:], dtype=str))


def _read_v0_1(group) -> Embedding:
    return Embedding(values=group["values"][:], obs=_read_obs(group["obs"]), provenance=dict(group.attrs.get("provenance", {})))


#: (encoding-type, encoding-version) -> reader
READERS: dict[tuple[str, str], Callable[[Any], Embedding]] = {(EMBEDDING_TYPE, "0.1.0"): _read_v0_1}


class EmbeddingStore:
    """A zarr v3 group of named embeddings (a folder, or any fsspec URL zarr understands).

    >>> store = EmbeddingStore("cells.zarr")
    >>> store.write("vae", z, obs=adata.obs, provenance={...})
    >>> store.read("vae").values.shape
    """

    def __init__(self, path: str | os.PathLike, *, mode: str = "a") -> None:
        import zarr

        self.path = str(path)
        try:
            self.root = zarr.open_group(self.path, mode=mode, zarr_format=3)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as error:
            raise StoreError(f"No embedding store at {self.path} ({error}); open it with mode='a' to create one.") from None
        kind = self.root.attrs.get("encoding-type")
        if kind is None and mode != "r":
            self.root.attrs.update({"encoding-type": STORE_TYPE, "encoding-version": VERSION})
        elif kind is not None and kind != STORE_TYPE:
            raise StoreError(f"{self.path} is a zarr group of type {kind!r}, not a virtualcell embedding store.")

    def keys(self) -> list[str]:
        return sorted(k for k in self.root.group_keys() if not k.startswith("."))

    def __contains__(self, key: str) -> bool:
        return key in self.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def write(self, key: str, values: np.ndarray, *, obs: pd.DataFrame | None = None,
              provenance: Mapping[str, Any] | None = None, overwrite: bool = False, chunk_rows: int = 16384) -> None:
        """Store ``values`` [n, d] (float32, row-chunked) with ``obs`` [n rows] under ``key``."""
        values = np.asarray(values, dtype=np.float32)
        if values.ndim != 2:
            raise StoreError(f"values must be [n, d]; got shape {values.shape}.")
        if not np.isfinite(values).all():
            raise StoreError(f"values for {key!r} contain NaN or inf; refusing to store them.")
        obs = pd.DataFrame(index=[str(i) for i in range(values.shape[0])]) if obs is None else obs
        if len(obs) != values.shape[0]:
            raise StoreError(f"obs has {len(obs)} rows but values has {values.shape[0]}.")
        if key in self and not overwrite:
            raise StoreError(f"{key!r} already exists in {self.path}; pass overwrite=True to replace it.")
        if "/" in key or key.startswith("."):
            raise StoreError(f"Invalid key {key!r}: no '/' and no leading '.'.")
        local = self._local_dir()
        # local folders: write under a temporary name, then rename (atomic); remote stores: in place
        name = f".{key}.{uuid.uuid4().hex[:8]}.partial" if local is not None else key
        if local is None and key in self:
            del self.root[key]
        group = self.root.create_group(name)
        try:
            array = group.create_array("values", shape=values.shape, dtype="float32",
                                       chunks=(min(chunk_rows, max(values.shape[0], 1)), values.shape[1]))
            array[:] = values
            _write_obs(group.create_group("obs"), obs)
            group.attrs.update({"encoding-type": EMBEDDING_TYPE, "encoding-version": VERSION,
                                "provenance": dict(provenance or {})})
        except BaseException:
            if local is not None:
                shutil.rmtree(local / name, ignore_errors=True)
            raise
        if local is not None:
            self._replace(local, name, key)

    def _local_dir(self) -> Path | None:
        path = Path(self.path)
        return path if "://" not in self.path and path.is_dir() else None

    @staticmethod
    def _replace(local: Path, temporary: str, key: str) -> None:
        old = None
        if (local / key).exists():
            old = local / f".{key}.old-{uuid.uuid4().hex[:8]}"
            os.replace(local / key, old)
        os.replace(local / temporary, local / key)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def read(self, key: str) -> Embedding:
        """The embedding stored under ``key`` (dispatching on its encoding type and version)."""
        if key not in self:
            raise StoreError(f"No embedding {key!r} in {self.path}; it holds {self.keys()}.")
        group = self.root[key]
        spec = (group.attrs.get("encoding-type"), group.attrs.get("encoding-version"))
        reader = READERS.get(spec)
        if reader is None:
            raise StoreError(f"{self.path}/{key} is encoded as {spec}, which this virtualcell cannot read "
                             f"(it reads {sorted(READERS)}). Upgrade virtualcell.")
        return reader(group)

    def nearest(self, key: str, query: np.ndarray, k: int = 10, *, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` stored cells closest (Euclidean) to each query row: (indices [m, k], distances [m, k])."""
        import torch

        values = torch.from_numpy(self.read(key).values)
        query = torch.as_tensor(np.asarray(query, dtype=np.float32))
        if query.ndim != 2 or query.shape[1] != values.shape[1]:
            raise StoreError(f"query must be [m, {values.shape[1]}]; got {tuple(query.shape)}.")
        k = min(k, values.shape[0])
        indices, distances = [], []
        for start in range(0, query.shape[0], batch_size):
            d = torch.cdist(query[start:start + batch_size], values)
            top = torch.topk(d, k, largest=False)
            indices.append(top.indices)
            distances.append(top.values)
        return torch.cat(indices).numpy(), torch.cat(distances).numpy()
