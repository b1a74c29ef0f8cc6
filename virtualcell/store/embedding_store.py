"""EmbeddingStore: cell representations in zarr v3, self-describing, appendable, queryable chunk by chunk.

Layout and validation: :mod:`.format`; opening (what is refused): :mod:`.opening`; the append/commit
protocol: :mod:`.append`; replacing a key safely: :mod:`.replace`; metadata filters: :mod:`.filter`;
reading rows: :mod:`.reader`; exact and approximate neighbours: :mod:`.knn`, :mod:`.ann`; centroids
and state arithmetic: :mod:`.query`. Every read works on one :class:`~.format.Snapshot` (the committed
row count read once), so a reader never sees half of an append.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .append import KeyWriter, check_values, create_key, key_lock
from .filter import parse_filter
from .format import Embedding, Snapshot, StoreError, check_name, read_obs, read_obs_v0_1, snapshot
from .opening import open_root
from .reader import ChunkReader
from .replace import readable_path, recover, replace_folder, stranded_keys, temporary_name

__all__ = ["EmbeddingStore"]


class EmbeddingStore:
    """A zarr v3 group of named embeddings (a folder, or any fsspec URL zarr understands).

    ``mode``: ``"a"`` opens or creates (default), ``"r"`` only reads, ``"w"`` starts an empty store
    (refused on a store that holds keys unless ``overwrite=True``). A folder of other files, or a zarr
    group of another kind, is refused. Opening with a mode that writes repairs keys left by a writer
    killed mid-replace; a reader reads them where they lie.

    >>> store = EmbeddingStore("cells.zarr")
    >>> store.write("vae", z, obs=adata.obs, provenance={...})      # z [n, d]
    >>> store.append("vae", z2, obs=more.obs)                       # readers see n or n + m rows
    >>> store.nearest("vae", z[:5], k=10, where='cell_type == "B"')  # (indices [5, 10], distances)
    """

    def __init__(self, path: str | os.PathLike, *, mode: str = "a", overwrite: bool = False) -> None:
        self.path, self.mode = str(path), mode
        self.root = open_root(self.path, mode, overwrite=overwrite)
        local = self.local_root
        if local is not None and mode != "r":
            for key in sorted(stranded_keys(local)):
                with key_lock(local, key):
                    recover(local, key)

    # -- listing -------------------------------------------------------------------------------
    def keys(self) -> list[str]:
        local = self.local_root
        if local is not None:  # a folder listing, without opening every member (and keys a killed writer left aside)
            listed = {p.name for p in local.iterdir() if p.is_dir() and not p.name.startswith(".")
                      and (p / "zarr.json").exists()}
            return sorted(listed | {k for k in stranded_keys(local) if readable_path(local, k) is not None})
        return sorted(k for k in self.root.group_keys() if not k.startswith("."))

    def __contains__(self, key: str) -> bool:
        return key in self.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    @property
    def local_root(self) -> Path | None:
        path = Path(self.path)
        return path if "://" not in self.path and path.is_dir() else None

    def group(self, key: str):
        """The zarr group of ``key`` (an error listing the keys when it is missing)."""
        check_name(key, "key")
        if key not in self:
            raise StoreError(f"No embedding {key!r} in {self.path}; it holds {self.keys()}.")
        local = self.local_root
        if local is None or (local / key / "zarr.json").exists():
            return self.root[key]
        import zarr

        for _ in range(3):  # a writer killed mid-replace left the key aside: read it where it lies
            found = readable_path(local, key)
            try:
                return self.root[key] if found == local / key else zarr.open_group(found, mode="r", zarr_format=3)
            except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError):
                continue  # moved meanwhile by a writer that repairs it
        raise StoreError(f"{key!r} in {self.path} is being replaced; try again.")

    def reader(self, key: str, *, state: Snapshot | None = None) -> ChunkReader:
        """A :class:`~.reader.ChunkReader` over ``key``'s committed rows (at ``state``, default: now)."""
        state = state or self.snapshot(key)
        return ChunkReader(self.group(key)["values"], state)

    # -- writing -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def writer(self, key: str, *, dim: int | None = None, provenance: Mapping[str, Any] | None = None,
               append: bool = False, overwrite: bool = False, chunk_rows: int = 16384) -> Iterator[KeyWriter]:
        """A :class:`~.append.KeyWriter` for ``key``, under its lock; committed rows become visible on commit.

        ``append=True`` adds to an existing key (created when missing, with ``dim``); otherwise a new
        key is built under a temporary name and moved into place at the end (local stores), so a
        failure leaves the old version (or nothing) behind.
        """
        check_name(key, "key")
        if append and overwrite:
            raise StoreError("append=True adds rows to a key and overwrite=True replaces it: choose one.")
        if self.mode == "r":
            raise StoreError(f"{self.path} is open read-only (mode='r'); open it with mode='a' to write.")
        local = self.local_root
        with key_lock(local, key):
            if local is not None:
                recover(local, key)
            exists = key in self
            if exists and not (append or overwrite):
                raise StoreError(f"{key!r} already exists in {self.path}; pass overwrite=True to replace it "
                                 "(or append=True to add rows).")
            if append and exists:
                yield KeyWriter(self.root[key], key)
                return
            if dim is None:
                raise StoreError(f"{key!r} does not exist yet; give its dimension (dim=...) to create it.")
            name = temporary_name(key) if local is not None else key
            if local is None and exists:
                del self.root[key]
            try:
                yield KeyWriter(create_key(self.root, name, dim=dim, chunk_rows=chunk_rows, provenance=provenance), key)
            except BaseException:
                if local is not None:
                    import shutil

                    shutil.rmtree(local / name, ignore_errors=True)
                raise
            if local is not None:
                replace_folder(local, name, key)

    def write(self, key: str, values: np.ndarray, *, obs: pd.DataFrame | None = None,
              provenance: Mapping[str, Any] | None = None, overwrite: bool = False, chunk_rows: int = 16384) -> None:
        """Store ``values`` [n, d] (float32, row-chunked) with ``obs`` [n rows] under ``key``."""
        values = check_values(values, None, f"values for {key!r}")
        if obs is not None and len(obs) != len(values):
            raise StoreError(f"obs has {len(obs)} rows but values has {len(values)}.")
        with self.writer(key, dim=values.shape[1], provenance=provenance, overwrite=overwrite,
                         chunk_rows=min(chunk_rows, max(len(values), 1))) as writer:
            writer.write_rows(writer.reserve(len(values)), values)
            writer.commit(obs)

    def append(self, key: str, values: np.ndarray, *, obs: pd.DataFrame | None = None,
               provenance: Mapping[str, Any] | None = None, chunk_rows: int = 16384) -> Snapshot:
        """Add rows [m, d] (and their ``obs``) to ``key``, creating it when missing; returns the new snapshot."""
        values = check_values(values, None, f"values for {key!r}")
        with self.writer(key, dim=values.shape[1], provenance=provenance, append=True, chunk_rows=chunk_rows) as writer:
            writer.write_rows(writer.reserve(len(values)), values)
            return writer.commit(obs)

    # -- reading -------------------------------------------------------------------------------
    def snapshot(self, key: str) -> Snapshot:
        """The committed state of ``key`` (row count, dimension, obs parts), read once."""
        return snapshot(self.group(key), key)

    def __len__(self) -> int:
        return len(self.keys())

    def iter_chunks(self, key: str, *, state: Snapshot | None = None, rows: int | None = None
                    ) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, values[start:start + rows])`` blocks [<= rows, d] over the committed rows."""
        return self.reader(key, state=state).chunks(rows)

    def values(self, key: str, rows: np.ndarray | None = None, *, state: Snapshot | None = None) -> np.ndarray:
        """The committed values [n, d] (or the rows ``rows``, sorted or not) of ``key``."""
        return self.reader(key, state=state).take(rows)

    def obs(self, key: str, columns: list[str] | None = None, *, state: Snapshot | None = None) -> pd.DataFrame:
        """The committed rows' obs (all columns or ``columns``), one anndata dataframe part per append."""
        state = state or self.snapshot(key)
        group = self.group(key)
        if state.version == "0.1.0":
            frame = read_obs_v0_1(group["obs"])
            return frame if columns is None else frame[self._check_columns(frame.columns, columns, key)]
        if not state.obs_parts:
            return pd.DataFrame(index=pd.Index([], dtype=str))
        if columns is not None:
            columns = self._check_columns(self.obs_columns(key, state=state), columns, key)
        frames = [read_obs(group["obs"][name], columns, n_rows=rows) for name, rows in state.obs_parts]
        return _concat(frames)

    def obs_columns(self, key: str, *, state: Snapshot | None = None) -> list[str]:
        """The names of ``key``'s obs columns (without reading them)."""
        state = state or self.snapshot(key)
        group = self.group(key)["obs"]
        if state.version == "0.1.0":
            return [str(c) for c in group.attrs.get("column-order", [])]
        if not state.obs_parts:
            return []
        return [str(c) for c in group[state.obs_parts[0][0]].attrs.get("column-order", [])]

    @staticmethod
    def _check_columns(known, columns: list[str], key: str) -> list[str]:
        missing = [c for c in columns if c not in list(known)]
        if missing:
            raise StoreError(f"obs of {key!r} has no column {missing}; its columns are {list(known)}.")
        return list(columns)

    def read(self, key: str) -> Embedding:
        """The whole embedding stored under ``key`` (values [n, d], obs, provenance) in memory."""
        state = self.snapshot(key)
        return Embedding(values=self.values(key, state=state), obs=self.obs(key, state=state),
                         provenance=dict(self.group(key).attrs.get("provenance", {})))

    # -- queries (see query.py, knn.py, ann.py) ------------------------------------------------------
    def select(self, key: str, where: str, *, state: Snapshot | None = None) -> np.ndarray:
        """Row numbers [m] whose obs satisfies the filter ``where`` (see :mod:`.filter`)."""
        expression = parse_filter(where)
        state = state or self.snapshot(key)
        expression.check_columns(self.obs_columns(key, state=state))
        frame = self.obs(key, sorted(expression.columns()), state=state)
        return np.flatnonzero(expression.evaluate(frame))

    def nearest(self, key: str, query: np.ndarray, k: int = 10, *, metric: str = "euclidean",
                where: str | None = None, approximate: bool = False, batch_size: int = 1024,
                ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` stored cells closest to each query row [m, d]: (row numbers [m, k], distances [m, k]).

        Exact by default, streaming the store chunk by chunk (:func:`.knn.exact_knn`); ``approximate``
        uses the index built by :meth:`build_index`; ``where`` restricts the candidates by obs.
        """
        state = self.snapshot(key)
        subset = None if where is None else self.select(key, where, state=state)
        if approximate:
            from .ann import load_index

            if subset is not None:
                raise StoreError("approximate=True cannot filter; drop where=... or search exactly.")
            return load_index(self.group(key), self.reader(key, state=state)).search(query, k)
        from .knn import exact_knn

        if subset is not None and subset.size == 0:
            from .explain import no_match

            raise StoreError(no_match(where, self.obs(key, sorted(parse_filter(where).columns()), state=state), key))
        return exact_knn(self.reader(key, state=state), query, k, metric=metric, rows=subset, batch_size=batch_size)

    def build_index(self, key: str, **options: Any):
        """Build and save the approximate index of ``key`` inside the store (see :mod:`.ann`)."""
        from .ann import build_index, save_index

        index = build_index(self.reader(key), name=key, **options)
        save_index(self.group(key), index)
        return index


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate obs parts; categoricals whose categories differ keep a union of them."""
    if len(frames) == 1:
        return frames[0]
    from pandas.api.types import union_categoricals

    out = pd.concat(frames)
    for column in frames[0].columns:
        if all(isinstance(f[column].dtype, pd.CategoricalDtype) for f in frames):
            out[column] = pd.Categorical(union_categoricals([f[column].array for f in frames]))
    return out
