"""The on-disk format of an embedding store: layout, validation of what a store claims, obs through anndata.

```
cells.zarr/                    attrs: encoding-type "virtualcell.embedding-store", encoding-version
  <key>/                       attrs: encoding-type "virtualcell.embedding", encoding-version 0.2.0,
                                      provenance, committed: {n_rows, obs_parts: [[name, n_rows], ...]}
    values [capacity, d]       float32, row-chunked; rows >= committed n_rows are not yet visible
    obs/<part>                 anndata dataframe elements (``anndata.io.write_elem``), one per append
    index/                     optional approximate-kNN index (bytes, never pickle), see ``ann.py``
```
Readers dispatch on (encoding-type, encoding-version), as anndata's IO registry does: an unknown
version asks to upgrade virtualcell. Every name a store's attrs hold (obs parts, index files) is
checked against :data:`NAME` before it is used as a path, and every shape against hard limits, so a
hostile store cannot make us read or write outside it nor allocate absurd memory.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["StoreError", "Embedding", "Snapshot", "write_obs", "read_obs", "snapshot", "check_name", "check_segment",
           "STORE_TYPE", "EMBEDDING_TYPE", "VERSION", "READABLE_VERSIONS"]

STORE_TYPE, EMBEDDING_TYPE, VERSION = "virtualcell.embedding-store", "virtualcell.embedding", "0.2.0"
#: embedding versions this code reads (0.1.0: one obs group and no commit record)
READABLE_VERSIONS = ("0.1.0", "0.2.0")
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
MAX_DIM, MAX_ROWS, MAX_CHUNK_BYTES = 1 << 16, 1 << 40, 1 << 30
_DTYPES = "virtualcell:pandas-dtypes"  # obs columns re-typed for anndata, restored on read
_DATETIME = re.compile(r"datetime64\[(s|ms|us|ns)(, [A-Za-z0-9_/+:\-]{1,40})?\]")


class StoreError(ValueError):
    """A store or key that cannot be read or written as asked."""


@dataclasses.dataclass
class Embedding:
    """``values`` [n, d] float32 with per-cell ``obs`` and the ``provenance`` of how it was made."""

    values: np.ndarray
    obs: pd.DataFrame
    provenance: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What one reader sees of a key: ``n_rows`` committed rows of ``dim`` and their obs parts."""

    key: str
    n_rows: int
    dim: int
    chunk_rows: int
    obs_parts: tuple[tuple[str, int], ...]
    version: str


def check_name(name: Any, what: str) -> str:
    """``name`` if it is a plain file name (no '/', no '..', no leading '.'); else ``StoreError``."""
    if not isinstance(name, str) or not NAME.fullmatch(name) or ".." in name:
        raise StoreError(f"Invalid {what} {name!r}: use letters, digits, '_', '-' and '.', no '/' and no leading "
                         "'.' (a store whose attributes name other paths is refused).")
    return name


def check_segment(name: Any, what: str) -> str:
    """``name`` if it is one path segment (obs column names may hold spaces, not '/' nor '..')."""
    if (not isinstance(name, str) or not name or len(name) > 255 or name in (".", "..")
            or any(c in name for c in "/\\\0")):
        raise StoreError(f"Invalid {what} {name!r}: the store names a path outside its element; it is damaged or hostile.")
    return name


def _anndata_settings():
    import anndata as ad

    return ad.settings.override(allow_write_nullable_strings=True, auto_shard_zarr_v3=False)


def _prepare_obs(obs: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Re-type what anndata cannot write (datetimes; text with missing values) and record how to undo it."""
    out, dtypes = obs.copy(), {}
    out.columns = [str(c) for c in out.columns]
    for column in out.columns:
        series = out[column]
        if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(series.dtype):
            dtypes[column] = str(series.dtype)
            out[column] = pd.array(np.where(series.isna(), 0, series.array.asi8), dtype="Int64")
            out.loc[series.isna().to_numpy(), column] = pd.NA
        elif series.dtype == object:
            kinds = {type(v) for v in series if v is not None and not (isinstance(v, float) and np.isnan(v))}
            if kinds - {str}:
                raise StoreError(f"obs column {column!r} mixes types {sorted(k.__name__ for k in kinds)}; convert it "
                                 "to one type (e.g. obs[col].astype(str)) before storing it.")
            if series.isna().any():
                dtypes[column] = "object"
                out[column] = series.astype("string")
    out.index = out.index.astype(str)
    return out, dtypes


def write_obs(group, name: str, obs: pd.DataFrame) -> None:
    """Write ``obs`` as the anndata dataframe element ``group/name`` (zarr v3), every dtype kept."""
    from anndata.io import write_elem

    prepared, dtypes = _prepare_obs(obs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # anndata's notices about future zarr defaults
        try:
            with _anndata_settings():
                write_elem(group, check_name(name, "obs part"), prepared)
        except StoreError:
            raise
        except Exception as error:  # anndata's IORegistryError and friends: name the column types
            raise StoreError(f"obs could not be stored ({error}); its dtypes are {dict(obs.dtypes.astype(str))}.") from error
    group[name].attrs[_DTYPES] = dtypes


def _check_sizes(node, n_rows: int, what: str) -> None:
    """Refuse an element whose arrays claim far more entries than the part's committed rows."""
    import zarr

    limit = 4 * max(n_rows, 1) + (1 << 20)
    arrays = [node] if isinstance(node, zarr.Array) else [a for _, a in node.arrays()]
    for array in arrays:
        if array.size > limit:
            raise StoreError(f"obs {what} claims {array.size} entries for {n_rows} rows; the store is damaged or hostile.")


def read_obs(group, columns: list[str] | None = None, *, n_rows: int | None = None) -> pd.DataFrame:
    """Read the dataframe element ``group`` (all columns or ``columns``), restoring re-typed columns.

    ``n_rows`` (the committed rows of this part) bounds what any of its arrays may claim.
    """
    from anndata.io import read_elem

    attrs = dict(group.attrs)
    if attrs.get("encoding-type") != "dataframe":
        raise StoreError(f"{group.path} is not an anndata dataframe element (encoding-type {attrs.get('encoding-type')!r}).")
    order = [str(c) for c in attrs.get("column-order", [])]
    wanted = order if columns is None else list(columns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        nodes = {c: group[check_segment(c, "obs column")] for c in wanted}
        index_node = group[check_segment(attrs.get("_index", "_index"), "obs index")]
        if n_rows is not None:
            for name, node in [("index", index_node)] + [(f"column {c!r}", n) for c, n in nodes.items()]:
                _check_sizes(node, n_rows, name)
        index = pd.Index(read_elem(index_node), dtype=str)
        if n_rows is not None and len(index) != n_rows:
            raise StoreError(f"an obs part holds {len(index)} rows but {n_rows} are committed; the store is damaged.")
        data = {c: read_elem(node) for c, node in nodes.items()}
    frame = pd.DataFrame(data, index=index, columns=wanted)
    for column, dtype in dict(attrs.get(_DTYPES, {})).items():
        if column not in frame:
            continue
        if dtype == "object":
            frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
        elif isinstance(dtype, str) and _DATETIME.fullmatch(dtype):
            nanos = frame[column].astype("Int64")
            frame[column] = pd.Series(pd.to_datetime(nanos.to_numpy(dtype="int64", na_value=np.iinfo("int64").min),
                                                     unit="ns", utc="," in dtype), index=frame.index)
            frame.loc[nanos.isna().to_numpy(), column] = pd.NaT
            frame[column] = frame[column].astype(dtype)
        else:
            raise StoreError(f"obs column {column!r} claims dtype {dtype!r}, which virtualcell does not restore.")
    return frame


def read_obs_v0_1(group) -> pd.DataFrame:
    """obs as virtualcell 0.1 hand-wrote it (columns as arrays, categoricals as codes + categories)."""
    columns = {}
    for name in group.attrs.get("column-order", []):
        node = group[check_segment(name, "obs column")]
        if node.attrs.get("encoding-type") == "categorical":
            columns[name] = pd.Categorical.from_codes(node["codes"][:], categories=list(node["categories"][:]))
        else:
            values = node[:]
            columns[name] = pd.Series(values, dtype=str).array if values.dtype.kind in "OUST" else values
    return pd.DataFrame(columns, index=pd.Index(group["_index"][:], dtype=str))


def _int(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= int(value) <= high:
        raise StoreError(f"The store claims {what} = {value!r}, outside [{low}, {high}]; it is damaged or hostile.")
    return int(value)


def snapshot(group, key: str) -> Snapshot:
    """Read ``group``'s commit record once and check it against its arrays (see the module docstring)."""
    import zarr

    attrs = dict(group.attrs)
    spec = (attrs.get("encoding-type"), attrs.get("encoding-version"))
    if spec[0] != EMBEDDING_TYPE or spec[1] not in READABLE_VERSIONS:
        raise StoreError(f"{key!r} is encoded as {spec}, which this virtualcell cannot read (it reads "
                         f"{[(EMBEDDING_TYPE, v) for v in READABLE_VERSIONS]}). Upgrade virtualcell.")
    values = group.get("values")
    if not isinstance(values, zarr.Array) or values.ndim != 2 or values.dtype != np.float32:
        raise StoreError(f"{key!r} has no float32 [n, d] 'values' array; the store is damaged.")
    dim = _int(values.shape[1], "the dimension", 1, MAX_DIM)  # a 0-dimensional embedding cannot be searched
    capacity = _int(values.shape[0], "the row capacity", 0, MAX_ROWS)
    chunk_rows = _int(values.chunks[0], "the rows per chunk", 1, MAX_ROWS)
    if chunk_rows * max(dim, 1) * 4 > MAX_CHUNK_BYTES:
        raise StoreError(f"{key!r} claims chunks of {chunk_rows} x {dim} float32 (over {MAX_CHUNK_BYTES >> 20} MiB); refusing.")
    if spec[1] == "0.1.0":  # one obs group, every row committed
        return Snapshot(key, capacity, dim, chunk_rows, (("", capacity),), spec[1])
    committed = attrs.get("committed")
    if not isinstance(committed, dict) or not isinstance(committed.get("obs_parts"), list):
        raise StoreError(f"{key!r} has no commit record; the store is damaged.")
    n_rows = _int(committed.get("n_rows"), "the committed row count", 0, capacity)
    parts = []
    for entry in committed["obs_parts"]:
        if not isinstance(entry, list) or len(entry) != 2:
            raise StoreError(f"{key!r} has a malformed obs part record {entry!r}.")
        parts.append((check_name(entry[0], "obs part"), _int(entry[1], "an obs part's rows", 0, n_rows)))
    if sum(rows for _, rows in parts) != n_rows:
        raise StoreError(f"{key!r}: its obs parts hold {sum(r for _, r in parts)} rows but {n_rows} are committed.")
    return Snapshot(key, n_rows, dim, chunk_rows, tuple(parts), spec[1])
