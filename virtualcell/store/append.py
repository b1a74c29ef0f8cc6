"""Appending rows to a key so that readers always see a consistent row count.

The protocol (one writer per key at a time, any number of readers):

1. take the key's lock (``fcntl.flock`` on a file inside the store, for local stores);
2. grow ``values`` to hold the new rows (readers read only up to the *committed* count, so a larger
   array is invisible to them);
3. write the rows (each chunk file is replaced atomically by zarr, so a chunk shared with committed
   rows is always either the old or the new bytes, and the committed rows are the same in both);
4. write the rows' ``obs`` as a new anndata dataframe part under a fresh name;
5. commit: rewrite the key's attributes once with the new ``n_rows`` and the list of obs parts.

A crash before step 5 leaves the committed rows untouched; the next writer reuses the rows after
them and deletes obs parts that no commit names. Appended cells must have names (``obs`` index) that
the key does not hold yet: appending the same cells twice is refused (rename them to keep both).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .format import EMBEDDING_TYPE, VERSION, Snapshot, StoreError, check_name, read_obs, snapshot, write_obs

__all__ = ["KeyWriter", "key_lock", "create_key", "check_values"]

LOCKS = ".virtualcell-locks"


def check_values(values: Any, dim: int | None, what: str) -> np.ndarray:
    """``values`` as C-contiguous float32 [n, d], refusing NaN/inf and a wrong width."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    if values.ndim != 2:
        raise StoreError(f"{what} must be [n, d]; got shape {values.shape}.")
    if values.shape[1] == 0:
        raise StoreError(f"{what} have 0 dimensions (shape {values.shape}); an embedding needs d >= 1 to be searched.")
    if dim is not None and values.shape[1] != dim:
        raise StoreError(f"{what} has {values.shape[1]} dimensions but the key stores {dim}.")
    if not np.isfinite(values).all():
        raise StoreError(f"{what} contain NaN or inf; refusing to store them.")
    return values


@contextlib.contextmanager
def key_lock(local_root: Path | None, key: str) -> Iterator[None]:
    """Exclusive lock of ``key`` for writers (local stores; remote stores assume one writer)."""
    if local_root is None:
        yield
        return
    import fcntl

    folder = local_root / LOCKS
    folder.mkdir(exist_ok=True)
    if not (folder / "zarr.json").exists():  # a plain zarr group, so listing the store stays quiet
        (folder / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    with open(folder / f"{check_name(key, 'key')}.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def create_key(root, name: str, *, dim: int, chunk_rows: int, provenance: Mapping[str, Any] | None):
    """An empty key group (0 committed rows) with a float32 [0, dim] ``values`` array (``dim`` >= 1)."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise StoreError(f"dim={dim!r}: an embedding needs a whole number of dimensions >= 1.")
    group = root.create_group(name, overwrite=True)
    group.create_array("values", shape=(0, dim), dtype="float32", chunks=(max(int(chunk_rows), 1), dim),
                       compressors=None)
    group.create_group("obs")
    group.attrs.update({"encoding-type": EMBEDDING_TYPE, "encoding-version": VERSION,
                        "provenance": dict(provenance or {}), "committed": {"n_rows": 0, "obs_parts": []}})
    return group


class KeyWriter:
    """Appends to one key group under its lock: :meth:`reserve`, :meth:`write_rows`, :meth:`commit`."""

    def __init__(self, group, key: str) -> None:
        self.group, self.key = group, key
        self.state: Snapshot = snapshot(group, key)
        if self.state.version != VERSION:
            raise StoreError(f"{key!r} is in the read-only {self.state.version} layout; rewrite it with "
                             "store.write(..., overwrite=True) to append to it.")
        self.reserved = self.state.n_rows
        self._drop_uncommitted_parts()

    @property
    def values(self):
        return self.group["values"]

    def _drop_uncommitted_parts(self) -> None:
        named = {name for name, _ in self.state.obs_parts}
        for name in list(self.group["obs"].group_keys()):
            if name not in named:
                del self.group["obs"][name]

    def reserve(self, n_rows: int) -> int:
        """Make room for ``n_rows`` more rows after those reserved so far; returns their first row."""
        start = self.reserved
        self.reserved += int(n_rows)
        if self.values.shape[0] < self.reserved:
            self.values.resize((self.reserved, self.state.dim))
        return start

    def write_rows(self, start: int, values: np.ndarray) -> None:
        """Write [m, d] rows at ``start`` (inside what :meth:`reserve` returned)."""
        values = check_values(values, self.state.dim, "values")
        if start < self.state.n_rows or start + len(values) > self.reserved:
            raise StoreError(f"rows {start}..{start + len(values)} are outside the reserved "
                             f"{self.state.n_rows}..{self.reserved}.")
        self.values[start:start + len(values)] = values

    def commit(self, obs: pd.DataFrame | None, provenance: Mapping[str, Any] | None = None) -> Snapshot:
        """Write the new rows' ``obs`` (default: row numbers as names) and publish the new row count."""
        added = self.reserved - self.state.n_rows
        if obs is None:
            obs = pd.DataFrame(index=[str(i) for i in range(self.state.n_rows, self.reserved)])
        if len(obs) != added:
            raise StoreError(f"obs has {len(obs)} rows but values has {added}.")
        parts = [list(p) for p in self.state.obs_parts]
        if added:
            if parts:
                self._check_columns(obs)
                self.check_new_names(obs.index)
            name = f"part-{len(parts):06d}-{uuid.uuid4().hex[:8]}"
            write_obs(self.group["obs"], name, obs)
            parts.append([name, added])
        attrs = {"committed": {"n_rows": self.reserved, "obs_parts": parts}}
        if provenance is not None:
            attrs["provenance"] = dict(provenance)
        self.group.attrs.update(attrs)
        self.state = snapshot(self.group, self.key)
        return self.state

    def check_new_names(self, names) -> None:
        """Refuse cell names the key already holds (the same cells appended twice)."""
        names = pd.Index([str(n) for n in names])
        if not self.state.obs_parts or names.empty:
            return
        obs = self.group["obs"]
        stored = [read_obs(obs[part], [], n_rows=rows).index for part, rows in self.state.obs_parts]
        twice = names[names.isin(stored[0].append(stored[1:]))]
        if len(twice):
            raise StoreError(f"{len(twice)} appended cells are already stored in {self.key!r} (e.g. {list(twice[:5])}): "
                             "appending the same cells twice is refused. Append only new cells, or rename them "
                             "(e.g. adata.obs_names = 'batch2-' + adata.obs_names) to keep both copies.")

    def _check_columns(self, obs: pd.DataFrame) -> None:
        first = self.group["obs"][self.state.obs_parts[0][0]].attrs.get("column-order", [])
        if [str(c) for c in obs.columns] != list(first):
            raise StoreError(f"appended obs has columns {[str(c) for c in obs.columns]} but {self.key!r} stores "
                             f"{list(first)}; append the same columns in the same order.")
