"""Input validation shared by the metrics: [cells, genes] matrices, gene names and gene subsets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import sparse

__all__ = ["GeneIndex", "matrix", "matrices", "check_gene_names", "gene_positions", "gene_index"]

# Gene index subset: integer positions or a boolean mask over the genes; None means all genes.
GeneIndex = Sequence[int] | np.ndarray | None


def matrix(x: Any, name: str) -> np.ndarray:
    """Validated float64 ``[cells, genes]`` array (sparse densified)."""
    if x is None:
        raise ValueError(f"{name} is None; expected a [cells, genes] matrix")
    if sparse.issparse(x):
        x = x.toarray()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D [cells, genes] matrix, got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has no cells")
    if x.shape[1] == 0:
        raise ValueError(f"{name} has no genes")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def matrices(**named: Any) -> list[np.ndarray]:
    """Validate several matrices and check that they have the same number of genes."""
    mats = [matrix(x, name) for name, x in named.items()]
    n_genes = {name: m.shape[1] for name, m in zip(named, mats)}
    if len(set(n_genes.values())) > 1:
        desc = ", ".join(f"{k}: {v}" for k, v in n_genes.items())
        raise ValueError(f"mismatched number of genes ({desc})")
    return mats


def check_gene_names(genes: Sequence[str], n_genes: int) -> list[str]:
    names = [str(g) for g in genes]
    if len(names) != n_genes:
        raise ValueError(f"genes has {len(names)} names but the matrices have {n_genes} genes")
    if len(set(names)) != len(names):
        raise ValueError("genes contains duplicate names")
    return names


def gene_positions(genes: Sequence[str], subset: Sequence[str], what: str = "degs") -> np.ndarray:
    """Positions of the names ``subset`` in ``genes``; ValueError naming any unknown gene."""
    lookup = {str(g): i for i, g in enumerate(genes)}
    missing = [str(g) for g in subset if str(g) not in lookup]
    if missing:
        raise ValueError(f"{what} contains genes not in genes: {missing[:5]}")
    return np.array([lookup[str(g)] for g in subset], dtype=int)


def gene_index(idx: GeneIndex, n_genes: int) -> np.ndarray | slice:
    """Normalise a gene subset (int positions or boolean mask) to something usable for indexing."""
    if idx is None:
        return slice(None)
    arr = np.asarray(idx)
    if arr.dtype == bool:
        if arr.shape != (n_genes,):
            raise ValueError(f"boolean idx must have shape ({n_genes},), got {arr.shape}")
        arr = np.flatnonzero(arr)
    elif arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"idx must hold integer gene positions or a boolean mask, got {arr.dtype}")
    arr = arr.astype(int).ravel()
    if arr.size == 0:
        raise ValueError("idx selects no genes")
    if arr.min() < -n_genes or arr.max() >= n_genes:
        raise ValueError(f"idx out of range for {n_genes} genes")
    return arr
