"""Spatial neighbour graphs from ``obsm["spatial"]``: k nearest or within a radius, per section.

Follows squidpy's ``gr.spatial_neighbors`` conventions: the graph is stored as
``obsp["spatial_connectivities"]`` (0/1) and ``obsp["spatial_distances"]`` (Euclidean), with the
settings in ``uns["spatial_neighbors"]``; a ``section_key`` (squidpy's ``library_key``) keeps cells of
different sections (slides, z-planes) out of each other's neighbourhoods. Neighbours are found with
scipy's KD-tree (O(n log n)), so a slide of a million cells takes seconds.

The graph is a CSR structure over cells: row ``i`` lists the neighbours ``j`` of cell ``i`` (itself
excluded). In PyG's convention messages flow ``j -> i``, so ``edge_index = [indices, row_of_entry]``.

Refused, with the fix named: cells at duplicated coordinates (unless ``deduplicate=True``: the graph
is built over the distinct positions and a repeated cell takes the neighbours of the first cell at
its position, with a warning), coordinates spanning more than :data:`MAX_COORDINATE_SPAN` (their
distances overflow: wrong units), and a ``radius`` within which no cell has a neighbour (a radius
that leaves some cells alone warns, naming the typical nearest-cell distance).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from typing import Any

import anndata as ad
import numpy as np
import scipy.sparse as sp

from .checks import DataError

__all__ = ["SpatialGraph", "SpatialGraphError", "spatial_coordinates", "section_codes", "build_spatial_graph",
           "spatial_neighbors", "first_at_position", "MAX_COORDINATE_SPAN"]

#: the widest coordinate range accepted: distances are stored as float32 (up to 3.4e38), and a
#: KD-tree squares them in float64 (overflow above ~1e154); no slide in any unit comes near 1e30
MAX_COORDINATE_SPAN = 1e30


class SpatialGraphError(DataError):
    """Coordinates that cannot give a neighbour graph (missing, NaN, duplicated, too few cells)."""


@dataclasses.dataclass(frozen=True)
class SpatialGraph:
    """Neighbours of ``n`` cells in CSR form.

    Attributes:
        indptr: [n + 1] int64, row ``i``'s neighbours are ``indices[indptr[i]:indptr[i + 1]]``.
        indices: [E] int64 neighbour ids (never ``i`` itself).
        distances: [E] float32 Euclidean distances, aligned with ``indices``.
    """

    indptr: np.ndarray
    indices: np.ndarray
    distances: np.ndarray

    @property
    def n_cells(self) -> int:
        return int(self.indptr.shape[0] - 1)

    @property
    def degrees(self) -> np.ndarray:
        return np.diff(self.indptr)

    def edge_index(self):
        """``torch.long [2, E]`` in PyG's source -> target order (neighbour ``j`` -> cell ``i``)."""
        import torch

        targets = np.repeat(np.arange(self.n_cells, dtype=np.int64), self.degrees)
        return torch.from_numpy(np.stack([self.indices, targets]))

    def connectivities(self) -> sp.csr_matrix:
        """[n, n] 0/1 matrix (row = cell, column = neighbour), squidpy's ``spatial_connectivities``."""
        data = np.ones(self.indices.shape[0], dtype=np.float32)
        return sp.csr_matrix((data, self.indices, self.indptr), shape=(self.n_cells, self.n_cells))

    def distance_matrix(self) -> sp.csr_matrix:
        """[n, n] Euclidean distances of the neighbours, squidpy's ``spatial_distances``."""
        return sp.csr_matrix((self.distances, self.indices, self.indptr), shape=(self.n_cells, self.n_cells))

    def expanded(self, rows: np.ndarray, ids: np.ndarray) -> "SpatialGraph":
        """The graph of ``len(rows)`` cells where cell ``i`` takes the neighbours of this graph's row ``rows[i]``,
        each neighbour ``j`` renamed ``ids[j]`` (``rows`` [n'] and ``ids`` [n] int arrays)."""
        degrees = self.degrees[rows]
        indptr = np.concatenate([[0], np.cumsum(degrees)]).astype(np.int64)
        positions = np.repeat(self.indptr[rows] - indptr[:-1], degrees) + np.arange(indptr[-1], dtype=np.int64)
        return SpatialGraph(indptr, np.asarray(ids, dtype=np.int64)[self.indices[positions]], self.distances[positions])

    def neighbour_mean(self, x: np.ndarray) -> np.ndarray:
        """Mean of ``x`` [n, g] over each cell's neighbours, [n, g] (a cell with none keeps its own row)."""
        out = np.asarray(self.connectivities() @ x, dtype=np.float32)
        degree = self.degrees
        out[degree > 0] /= degree[degree > 0, None]
        out[degree == 0] = x[degree == 0]
        return out


def spatial_coordinates(adata: ad.AnnData, spatial_key: str = "spatial") -> np.ndarray:
    """``obsm[spatial_key]`` as float64 [n, 2 or 3], with errors that name what exists instead."""
    if spatial_key not in adata.obsm:
        raise SpatialGraphError(f"obsm[{spatial_key!r}] not found; this AnnData has obsm keys {sorted(adata.obsm)}. "
                                "Pass spatial_key=... (CLI: --spatial-key) naming the cell coordinates.")
    coords = np.asarray(adata.obsm[spatial_key], dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] not in (2, 3):
        raise SpatialGraphError(f"obsm[{spatial_key!r}] has shape {coords.shape}; expected [cells, 2] or [cells, 3] "
                                "coordinates.")
    bad = ~np.isfinite(coords).all(axis=1)
    if bad.any():
        names = list(map(str, adata.obs_names[bad][:5]))
        raise SpatialGraphError(f"obsm[{spatial_key!r}] has NaN or infinite coordinates for {int(bad.sum())} cells "
                                f"(e.g. {names}); drop those cells first, e.g. "
                                f"adata = adata[np.isfinite(adata.obsm[{spatial_key!r}]).all(1)].copy().")
    return coords


def section_codes(adata: ad.AnnData, section_key: str | None) -> tuple[np.ndarray, list[str]]:
    """Integer section of each cell [n] and the section names (one section when ``section_key`` is None)."""
    if section_key is None:
        return np.zeros(adata.n_obs, dtype=np.int64), ["all"]
    if section_key not in adata.obs:
        raise SpatialGraphError(f"obs[{section_key!r}] not found (section key); obs has columns "
                                f"{list(adata.obs.columns)}.")
    column = adata.obs[section_key]
    if column.isna().any():
        raise SpatialGraphError(f"obs[{section_key!r}] is missing for {int(column.isna().sum())} cells; every cell "
                                "needs a section.")
    names, codes = np.unique(column.astype(str).to_numpy(), return_inverse=True)
    return codes.astype(np.int64), [str(n) for n in names]


def _check_section(coords: np.ndarray, name: str, n_neighbors: int | None) -> None:
    if n_neighbors is not None and coords.shape[0] <= n_neighbors:
        raise SpatialGraphError(f"section {name!r} has {coords.shape[0]} cells, too few for {n_neighbors} neighbours "
                                f"each (needs at least {n_neighbors + 1}); lower n_neighbors or drop the section.")
    unique, counts = np.unique(coords, axis=0, return_counts=True)
    if unique.shape[0] < coords.shape[0]:
        n_dup = int(coords.shape[0] - unique.shape[0])
        example = unique[counts > 1][0].tolist()
        raise SpatialGraphError(
            f"section {name!r} has {n_dup} cells at duplicated coordinates (e.g. {example} holds {int(counts.max())} "
            "cells at most); distances between them are 0 and their neighbourhoods are ambiguous. Remove duplicated "
            "rows, e.g. adata = adata[~pd.DataFrame(adata.obsm['spatial']).duplicated().to_numpy()].copy(), pass "
            "deduplicate=True (CLI: --deduplicate) to build the graph over the distinct positions, or pass the "
            "section key if these are different sections.")


def _check_isolated(coords: np.ndarray, degrees: np.ndarray, radius: float) -> None:
    """Refuse a radius that gives no cell a neighbour; warn when it leaves some alone."""
    alone = int((degrees == 0).sum())
    if not alone or coords.shape[0] < 2:
        return
    from scipy.spatial import cKDTree

    nearest = float(np.median(cKDTree(coords).query(coords, k=2)[0][:, 1]))
    advice = (f"the median distance from a cell to its nearest cell is {nearest:.3g}, so pass a radius of a few times "
              f"that (e.g. radius={3 * nearest:.3g}; CLI: --radius), or n_neighbors instead")
    if alone == coords.shape[0]:
        raise SpatialGraphError(f"No cell has a neighbour within radius={radius:g}, so there is no spatial graph (any "
                                f"'spatial' result would be expression alone): {advice}.")
    warnings.warn(f"{alone} of {coords.shape[0]} cells have no neighbour within radius={radius:g} and keep only their "
                  f"own expression as neighbourhood; {advice}.", stacklevel=4)


def build_spatial_graph(coords: np.ndarray, *, n_neighbors: int | None = 10, radius: float | None = None,
                        sections: np.ndarray | None = None, section_names: list[str] | None = None) -> SpatialGraph:
    """Neighbour graph of ``coords`` [n, d]: the ``n_neighbors`` nearest cells, or all within ``radius``.

    With ``sections`` [n] (integer codes) neighbours are searched within each section only. Exactly
    one of ``n_neighbors`` and ``radius`` is used (``radius`` wins when given).
    """
    from scipy.spatial import cKDTree

    coords = np.asarray(coords, dtype=np.float64)
    n = coords.shape[0]
    if radius is not None:
        if not radius > 0:
            raise ValueError(f"radius must be > 0; got {radius}.")
        n_neighbors = None
    elif n_neighbors is None or int(n_neighbors) < 1:
        raise ValueError(f"n_neighbors must be >= 1 (or give a radius); got {n_neighbors}.")
    if not np.isfinite(coords).all():
        raise SpatialGraphError("coordinates contain NaN or infinite values; drop those cells first.")
    span = float(np.ptp(coords, axis=0).max()) if n else 0.0
    if span > MAX_COORDINATE_SPAN:
        scale = 10.0 ** (int(np.floor(np.log10(span))) - 3)
        raise SpatialGraphError(f"the coordinates span {span:.3g} units, too wide for distances between cells (the "
                                f"limit is {MAX_COORDINATE_SPAN:.0e}): they are corrupted or in the wrong units. Rescale "
                                f"them, e.g. adata.obsm['spatial'] = adata.obsm['spatial'] / {scale:.0e}.")
    sections = np.zeros(n, dtype=np.int64) if sections is None else np.asarray(sections, dtype=np.int64)
    names = section_names or [str(s) for s in range(int(sections.max(initial=0)) + 1)]
    if n_neighbors is not None:
        k = int(n_neighbors)
        indices, distances = np.empty((n, k), np.int64), np.empty((n, k), np.float32)
    else:
        per_cell: list[np.ndarray] = [np.empty(0, np.int64)] * n
    for code in np.unique(sections):
        rows = np.flatnonzero(sections == code)
        local = coords[rows]
        _check_section(local, names[code], n_neighbors)
        tree = cKDTree(local)
        if n_neighbors is not None:
            d, j = tree.query(local, k=k + 1)
            # coordinates are unique, so each cell is its own first hit (distance 0): drop it
            indices[rows], distances[rows] = rows[j[:, 1:]], d[:, 1:]
        else:
            for i, hit in enumerate(tree.query_ball_point(local, r=float(radius), return_sorted=True)):
                per_cell[rows[i]] = rows[np.asarray([h for h in hit if h != i], dtype=np.int64)]
    if n_neighbors is not None:
        indptr = np.arange(n + 1, dtype=np.int64) * k
        return SpatialGraph(indptr, indices.ravel(), distances.ravel())
    degrees = np.fromiter((a.shape[0] for a in per_cell), dtype=np.int64, count=n)
    _check_isolated(coords, degrees, float(radius))
    indptr = np.concatenate([[0], np.cumsum(degrees)]).astype(np.int64)
    flat = np.concatenate(per_cell).astype(np.int64) if n else np.empty(0, np.int64)
    owner = np.repeat(np.arange(n), degrees)
    dist = np.linalg.norm(coords[flat] - coords[owner], axis=1).astype(np.float32)
    return SpatialGraph(indptr, flat, dist)


def spatial_neighbors(adata: ad.AnnData, *, spatial_key: str = "spatial", section_key: str | None = None,
                      n_neighbors: int = 10, radius: float | None = None, key_added: str = "spatial",
                      deduplicate: bool = False, copy: bool = False) -> ad.AnnData | None:
    """Build the neighbour graph into ``obsp[f"{key_added}_connectivities"]`` / ``obsp[f"{key_added}_distances"]``.

    The settings go to ``uns[f"{key_added}_neighbors"]`` (squidpy's layout, so squidpy's
    neighbourhood functions read it). Returns the modified copy when ``copy`` is True. ``deduplicate``:
    see :func:`graph_of`.
    """
    graph = graph_of(adata, spatial_key=spatial_key, section_key=section_key, n_neighbors=n_neighbors, radius=radius,
                     deduplicate=deduplicate)
    out = adata.copy() if copy else adata
    out.obsp[f"{key_added}_connectivities"] = graph.connectivities()
    out.obsp[f"{key_added}_distances"] = graph.distance_matrix()
    out.uns[f"{key_added}_neighbors"] = graph_settings(spatial_key, section_key, n_neighbors, radius, key_added)
    return out if copy else None


def first_at_position(coords: np.ndarray, sections: np.ndarray) -> np.ndarray:
    """For each cell, the row of the first cell at its coordinates in its section [n] (itself when unique)."""
    key = np.column_stack([np.asarray(sections, dtype=np.float64), coords])
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return first[np.asarray(inverse).ravel()]


def graph_of(adata: ad.AnnData, *, spatial_key: str = "spatial", section_key: str | None = None,
             n_neighbors: int | None = 10, radius: float | None = None, deduplicate: bool = False) -> SpatialGraph:
    """The :class:`SpatialGraph` of an AnnData's coordinates (checked), per section.

    Cells at duplicated coordinates are refused unless ``deduplicate``: then the graph is built over the
    distinct positions, each repeated cell takes the neighbours of the first cell at its position (and is
    no cell's neighbour), with a warning.
    """
    coords = spatial_coordinates(adata, spatial_key)
    sections, names = section_codes(adata, section_key)
    first = first_at_position(coords, sections) if deduplicate else None
    kept = None if first is None else np.flatnonzero(first == np.arange(len(first)))
    if kept is None or len(kept) == len(first):
        return build_spatial_graph(coords, n_neighbors=n_neighbors, radius=radius, sections=sections,
                                   section_names=names)
    warnings.warn(f"deduplicate=True: {len(first) - len(kept)} of {len(first)} cells repeat the coordinates of an earlier "
                  f"cell in their section; the graph is built over the {len(kept)} distinct positions and each repeated "
                  "cell takes the neighbours of the first cell at its position. If they are duplicated records, drop "
                  "them instead: adata[~pd.DataFrame(adata.obsm['spatial']).duplicated().to_numpy()].", stacklevel=3)
    graph = build_spatial_graph(coords[kept], n_neighbors=n_neighbors, radius=radius, sections=sections[kept],
                                section_names=names)
    return graph.expanded(np.searchsorted(kept, first), kept)


def graph_settings(spatial_key: str, section_key: str | None, n_neighbors: int | None, radius: float | None,
                   key_added: str = "spatial") -> Mapping[str, Any]:
    """squidpy-style ``uns`` record of how a spatial graph was built."""
    return {"connectivities_key": f"{key_added}_connectivities", "distances_key": f"{key_added}_distances",
            "params": {"n_neighs": None if radius is not None else int(n_neighbors), "radius": radius,
                       "coord_type": "generic", "spatial_key": spatial_key, "library_key": section_key,
                       "transform": None}}
