"""Preprocessing through scanpy, recorded so that prediction applies exactly the same steps.

A ``Preprocessing`` is a small JSON-able recipe (``normalize_total`` -> ``log1p`` -> highly
variable genes). ``fit`` chooses the genes on the training data; ``transform`` applies the recipe
to any AnnData and returns a dense float32 matrix in the chosen gene order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import anndata as ad
import numpy as np
import scipy.sparse as sp

from .align import align_matrix
from .checks import DataError, check_expression

__all__ = ["Preprocessing", "PRESETS", "get_matrix"]

PRESETS: dict[str, dict[str, Any]] = {
    "none": {},
    "counts": {"raw_counts": True},  # raw counts kept as they are (count-likelihood models, e.g. vae likelihood="nb")
    "log1p": {"normalize_total": 1e4, "log1p": True},
    "kang-full": {"normalize_total": 1e4, "log1p": True, "n_top_genes": 2000, "hvg_flavor": "seurat"},
}


def get_matrix(adata: ad.AnnData, layer: str | None = None):
    """``adata.X`` or ``adata.layers[layer]``, with an error listing the layers when it is missing."""
    if layer is None:
        if adata.X is None:
            raise DataError("adata.X is empty; pass layer=... naming the layer that holds expression.")
        return adata.X
    if layer not in adata.layers:
        raise DataError(f"Layer {layer!r} not found; adata has layers {list(adata.layers)} (or use layer=None for X).")
    return adata.layers[layer]


@dataclasses.dataclass
class Preprocessing:
    """Recipe: optional ``normalize_total(target_sum)``, ``log1p``, top-``n_top_genes`` HVGs.

    ``genes`` is filled by :meth:`fit` (HVGs, or all genes) and fixes the output column order.
    """

    normalize_total: float | None = None
    log1p: bool = False
    n_top_genes: int | None = None
    hvg_flavor: str = "seurat"
    genes: list[str] | None = None
    raw_counts: bool = False  # the input holds raw counts (checked as such) even without normalising

    @classmethod
    def from_spec(cls, spec: "str | Mapping[str, Any] | Preprocessing | None") -> "Preprocessing":
        """``None``/``"none"``, a preset name (``"counts"``, ``"log1p"``, ``"kang-full"``), a dict or a Preprocessing."""
        if isinstance(spec, Preprocessing):
            return dataclasses.replace(spec)
        if spec is None:
            return cls()
        if isinstance(spec, str):
            if spec not in PRESETS:
                raise ValueError(f"Unknown preprocessing preset {spec!r}; choose one of {sorted(PRESETS)} or pass a dict.")
            return cls(**PRESETS[spec])
        unknown = set(spec) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"Unknown preprocessing options {sorted(unknown)}; known: {[f.name for f in dataclasses.fields(cls)]}.")
        return cls(**dict(spec))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def expects(self) -> str:
        """What the input must hold: ``"counts"`` when the recipe normalises, else ``"log"``."""
        return "counts" if (self.normalize_total or self.log1p or self.raw_counts) else "log"

    def _normalised(self, adata: ad.AnnData, layer: str | None) -> ad.AnnData:
        import scanpy as sc

        x = get_matrix(adata, layer)
        check_expression(x, expect=self.expects, what=f"adata.{'X' if layer is None else 'layers[' + repr(layer) + ']'}",
                         obs_names=adata.obs_names, var_names=adata.var_names)
        work = ad.AnnData(X=x.astype(np.float32, copy=True), var={"gene": np.asarray(adata.var_names)})
        work.var_names = adata.var_names
        if self.normalize_total:
            sc.pp.normalize_total(work, target_sum=self.normalize_total)
        if self.log1p:
            sc.pp.log1p(work)
        return work

    def fit(self, adata: ad.AnnData, *, layer: str | None = None) -> "Preprocessing":
        """Choose the genes (HVGs computed on all cells of ``adata``, or all genes)."""
        if self.n_top_genes:
            import scanpy as sc

            work = self._normalised(adata, layer)
            if self.n_top_genes >= work.n_vars:
                self.genes = list(map(str, work.var_names))
                return self
            sc.pp.highly_variable_genes(work, n_top_genes=self.n_top_genes, flavor=self.hvg_flavor)
            self.genes = [str(g) for g in work.var_names[work.var["highly_variable"].to_numpy()]]
        else:
            self.genes = [str(g) for g in adata.var_names]
        return self

    def transform(self, adata: ad.AnnData, *, layer: str | None = None, genes: Sequence[str] | None = None) -> np.ndarray:
        """Apply the recipe; returns dense float32 [n, len(genes)] in ``genes`` (default ``self.genes``) order."""
        genes = list(genes if genes is not None else (self.genes or adata.var_names))
        if adata.n_obs == 0:
            raise DataError("The AnnData has no cells (0 observations).")
        work = self._normalised(adata, layer)
        x = align_matrix(work.X, list(map(str, work.var_names)), genes, what="the AnnData's var_names")
        x = x.toarray() if sp.issparse(x) else np.asarray(x)
        return np.ascontiguousarray(x, dtype=np.float32)
