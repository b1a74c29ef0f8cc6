"""Queries over a store: group centroids, state arithmetic, neighbours as a DataFrame or an AnnData.

Centroids stream the store chunk by chunk (memory: a chunk and [groups, d] sums). State arithmetic
moves cells by the difference of two centroids, scGen's latent arithmetic on stored cells:
``values(cells) + centroid(to) - centroid(from)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .format import StoreError

if TYPE_CHECKING:
    import anndata as ad

    from .embedding_store import EmbeddingStore

__all__ = ["centroid", "centroids", "shift", "neighbours_frame", "neighbours_anndata"]


def centroid(store: "EmbeddingStore", key: str, where: str) -> np.ndarray:
    """Mean [d] of the cells matching ``where``; an error when none does."""
    state = store.snapshot(key)
    rows = store.select(key, where, state=state)
    if rows.size == 0:
        raise StoreError(f"No stored cell of {key!r} matches {where!r}; a centroid needs at least one.")
    total = np.zeros(state.dim, dtype=np.float64)
    for start, values in store.iter_chunks(key, state=state):
        inside = rows[(rows >= start) & (rows < start + len(values))] - start
        total += values[inside].sum(axis=0, dtype=np.float64)
    return (total / rows.size).astype(np.float32)


def centroids(store: "EmbeddingStore", key: str, by: str, *, where: str | None = None) -> pd.DataFrame:
    """Per-group means [groups, d] of ``key`` grouped by the obs column ``by`` (optionally filtered)."""
    state = store.snapshot(key)
    labels = store.obs(key, [by], state=state)[by]
    keep = np.ones(state.n_rows, dtype=bool)
    if where is not None:
        keep[:] = False
        keep[store.select(key, where, state=state)] = True
    keep &= labels.notna().to_numpy()
    codes, groups = pd.factorize(labels.astype(object).where(keep, None), sort=True)
    sums = np.zeros((len(groups), state.dim), dtype=np.float64)
    for start, values in store.iter_chunks(key, state=state):
        part = codes[start:start + len(values)]
        inside = part >= 0
        np.add.at(sums, part[inside], values[inside].astype(np.float64))
    counts = np.bincount(codes[codes >= 0], minlength=len(groups))
    frame = pd.DataFrame((sums / counts[:, None]).astype(np.float32), index=pd.Index(groups, name=by))
    frame.insert(0, "n_cells", counts)
    return frame


def shift(store: "EmbeddingStore", key: str, cells: str, *, source: str, target: str) -> np.ndarray:
    """Cells matching ``cells`` [m, d] moved by ``centroid(target) - centroid(source)``."""
    state = store.snapshot(key)
    rows = store.select(key, cells, state=state)
    if rows.size == 0:
        raise StoreError(f"No stored cell of {key!r} matches {cells!r}.")
    delta = centroid(store, key, target) - centroid(store, key, source)
    return store.values(key, rows, state=state) + delta[None, :]


def neighbours_frame(store: "EmbeddingStore", key: str, rows: np.ndarray, distances: np.ndarray, *,
                     query_names: list[str] | None = None, columns: list[str] | None = None) -> pd.DataFrame:
    """One line per (query, rank): ``query``, ``rank`` (1 = nearest), ``row``, ``cell``, ``distance`` and obs columns."""
    m, k = rows.shape
    names = query_names if query_names is not None else [str(i) for i in range(m)]
    flat = rows.ravel()
    obs = store.obs(key, columns)
    frame = pd.DataFrame({"query": np.repeat(np.asarray(names, dtype=object), k), "rank": np.tile(np.arange(1, k + 1), m),
                          "row": flat, "cell": obs.index.to_numpy()[flat], "distance": distances.ravel()})
    picked = obs.iloc[flat].reset_index(drop=True)
    return pd.concat([frame, picked], axis=1)


def neighbours_anndata(store: "EmbeddingStore", key: str, rows: np.ndarray, distances: np.ndarray, *,
                       query_names: list[str] | None = None) -> "ad.AnnData":
    """The neighbours as an AnnData: ``X`` their stored values [m * k, d], ``obs`` as :func:`neighbours_frame`."""
    import anndata as ad

    frame = neighbours_frame(store, key, rows, distances, query_names=query_names)
    frame.index = [f"{q}:{r}" for q, r in zip(frame["query"], frame["rank"])]
    frame["query"] = frame["query"].astype(str)
    values = store.values(key, rows.ravel())
    return ad.AnnData(X=values, obs=frame)
