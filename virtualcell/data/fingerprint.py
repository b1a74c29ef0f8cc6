"""A cheap fingerprint of an AnnData (shape, cell names, gene names), recorded with what was fitted on it."""

from __future__ import annotations

import hashlib

import anndata as ad

__all__ = ["data_fingerprint"]


def data_fingerprint(adata: ad.AnnData, *, max_cells: int | None = 1000) -> str:
    """sha256 hex of ``adata``'s shape, its first ``max_cells`` obs names (None: all) and its var names.

    Reads no expression values, so it is fast on any size (backed files and disk stores included);
    it tells data sets apart, not two versions of the same cells' values.
    """
    digest = hashlib.sha256()
    digest.update(str(adata.shape).encode())
    names = adata.obs_names if max_cells is None else adata.obs_names[:max_cells]
    digest.update("\n".join(map(str, names)).encode())
    digest.update("\n".join(map(str, adata.var_names)).encode())
    return digest.hexdigest()
