"""Perturbation-prediction metrics, exactly as defined in the project's EVALUATION.md.

Notation: ``P`` predicted stimulated cells ``[p, g]``, ``S`` real stimulated cells ``[s, g]``,
``C`` real control cells ``[c, g]`` of one context, all log-normalised expression of the same
``g`` genes; ``mean(.)`` is the per-gene mean. Every function accepts numpy arrays or scipy
sparse matrices (densified), validates its inputs (2-D, at least one cell, same genes, finite
values; ``ValueError`` otherwise) and returns plain Python floats.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import sparse
from scipy import linalg as scipy_linalg

__all__ = [
    "top_degs",
    "r2_mean",
    "r2_var",
    "pearson_delta",
    "de_overlap",
    "energy_distance",
    "edistance_ratio",
    "gene_correlation_similarity",
    "perturbation_metrics",
]

# Gene index subset: integer positions or a boolean mask over the genes; None means all genes.
GeneIndex = Sequence[int] | np.ndarray | None

# Up to this smaller dimension (cells or genes) the PCA uses a full dense SVD, above it a Gram eigh.
_DENSE_SVD_MAX = 500


# --------------------------------------------------------------------------- validation helpers


def _matrix(x: Any, name: str) -> np.ndarray:
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


def _matrices(**named: Any) -> list[np.ndarray]:
    """Validate several matrices and check that they have the same number of genes."""
    mats = [_matrix(x, name) for name, x in named.items()]
    n_genes = {name: m.shape[1] for name, m in zip(named, mats)}
    if len(set(n_genes.values())) > 1:
        desc = ", ".join(f"{k}: {v}" for k, v in n_genes.items())
        raise ValueError(f"mismatched number of genes ({desc})")
    return mats


def _check_gene_names(genes: Sequence[str], n_genes: int) -> list[str]:
    names = [str(g) for g in genes]
    if len(names) != n_genes:
        raise ValueError(f"genes has {len(names)} names but the matrices have {n_genes} genes")
    if len(set(names)) != len(names):
        raise ValueError("genes contains duplicate names")
    return names


def _gene_positions(genes: Sequence[str], subset: Sequence[str], what: str = "degs") -> np.ndarray:
    """Positions of the names ``subset`` in ``genes``; ValueError naming any unknown gene."""
    lookup = {str(g): i for i, g in enumerate(genes)}
    missing = [str(g) for g in subset if str(g) not in lookup]
    if missing:
        raise ValueError(f"{what} contains genes not in genes: {missing[:5]}")
    return np.array([lookup[str(g)] for g in subset], dtype=int)


def _index(idx: GeneIndex, n_genes: int) -> np.ndarray | slice:
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


# --------------------------------------------------------------------------- scalar helpers


def _is_constant(x: np.ndarray) -> bool:
    """True if ``x`` is constant up to float rounding (relative to its magnitude)."""
    if x.size < 2:
        return True
    spread = float(np.ptp(x))
    return spread == 0.0 or spread <= 1e-12 * float(np.max(np.abs(x)))


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two 1-D vectors; 0.0 when either is constant."""
    if _is_constant(x) or _is_constant(y):
        return 0.0
    xc = x - x.mean()
    yc = y - y.mean()
    r = float(xc @ yc / np.sqrt((xc @ xc) * (yc @ yc)))
    return float(np.clip(r, -1.0, 1.0))


def _mean(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=0)


# --------------------------------------------------------------------------- metrics


def top_degs(stim: Any, ctrl: Any, genes: Sequence[str], n: int = 100) -> list[str]:
    """Top-``n`` DEGs of stimulated vs control cells, as in scGen's evaluation.

    Runs ``scanpy.tl.rank_genes_groups`` on ``S ∪ C`` with ``groupby="condition"`` and
    ``method="wilcoxon"`` (scanpy defaults otherwise, all genes ranked) and returns the first
    ``n`` names of the ``"stimulated"`` group (up-regulated genes first).

    stim: ``[s, g]``, ctrl: ``[c, g]`` log-normalised; genes: ``g`` unique names.
    """
    import anndata as ad
    import pandas as pd
    import scanpy as sc

    stim, ctrl = _matrices(stim=stim, ctrl=ctrl)
    names = _check_gene_names(genes, stim.shape[1])
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    for name, m in (("stim", stim), ("ctrl", ctrl)):
        if m.shape[0] < 2:
            raise ValueError(f"{name} needs at least 2 cells for a Wilcoxon test, got {m.shape[0]}")
    labels = ["stimulated"] * stim.shape[0] + ["control"] * ctrl.shape[0]
    obs = pd.DataFrame(
        {"condition": pd.Categorical(labels, categories=["control", "stimulated"])},
        index=[str(i) for i in range(len(labels))],
    )
    adata = ad.AnnData(X=np.vstack([stim, ctrl]), obs=obs, var=pd.DataFrame(index=names))
    sc.tl.rank_genes_groups(adata, groupby="condition", method="wilcoxon")
    ranked = adata.uns["rank_genes_groups"]["names"]["stimulated"]
    return [str(g) for g in ranked[:n]]


def r2_mean(pred: Any, real: Any, idx: GeneIndex = None) -> float:
    """Squared Pearson correlation of per-gene means of ``pred`` ``[p, g]`` and ``real`` ``[r, g]``.

    scGen's ``reg_mean_plot`` R² (= ``linregress(mean(real), mean(pred)).rvalue ** 2``), over the
    genes ``idx`` (positions or boolean mask; all genes if None). 0.0 when either side is constant.
    """
    pred, real = _matrices(pred=pred, real=real)
    sel = _index(idx, pred.shape[1])
    return _pearson(_mean(pred)[sel], _mean(real)[sel]) ** 2


def r2_var(pred: Any, real: Any, idx: GeneIndex = None) -> float:
    """Squared Pearson correlation of per-gene variances (ddof=0) of ``pred`` ``[p, g]`` and ``real`` ``[r, g]``.

    scGen's ``reg_var_plot`` R², over the genes ``idx`` (all if None). 0.0 when either side is constant.
    """
    pred, real = _matrices(pred=pred, real=real)
    sel = _index(idx, pred.shape[1])
    return _pearson(pred.var(axis=0)[sel], real.var(axis=0)[sel]) ** 2


def pearson_delta(pred: Any, stim: Any, ctrl: Any, idx: GeneIndex = None) -> float:
    """Pearson correlation of ``mean(P) − mean(C)`` and ``mean(S) − mean(C)`` over genes ``idx``.

    pred ``[p, g]``, stim ``[s, g]``, ctrl ``[c, g]``. Defined as 0.0 when either difference is
    constant, so that predicting "no change" (``P = C``) scores 0.
    """
    pred, stim, ctrl = _matrices(pred=pred, stim=stim, ctrl=ctrl)
    sel = _index(idx, pred.shape[1])
    mc = _mean(ctrl)
    return _pearson((_mean(pred) - mc)[sel], (_mean(stim) - mc)[sel])


def _top_abs(delta: np.ndarray, n: int) -> np.ndarray:
    """Positions of the ``n`` largest ``|delta|`` (ties broken by gene order, deterministic)."""
    return np.argsort(-np.abs(delta), kind="stable")[:n]


def _de_overlap_from_means(mp: np.ndarray, ms: np.ndarray, mc: np.ndarray, n: int) -> float:
    n = min(n, mp.shape[0])
    top_p = _top_abs(mp - mc, n)
    top_s = _top_abs(ms - mc, n)
    return len(np.intersect1d(top_p, top_s)) / n


def de_overlap(pred: Any, stim: Any, ctrl: Any, n: int = 100) -> float:
    """Overlap of the top-``n`` genes by ``|mean(P) − mean(C)|`` and by ``|mean(S) − mean(C)|``, divided by ``n``.

    pred ``[p, g]``, stim ``[s, g]``, ctrl ``[c, g]``. ``n`` is capped at ``g``; ties in ``|Δ|`` are
    broken by gene order.
    """
    pred, stim, ctrl = _matrices(pred=pred, stim=stim, ctrl=ctrl)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return _de_overlap_from_means(_mean(pred), _mean(stim), _mean(ctrl), n)


def energy_distance(a: Any, b: Any) -> float:
    """Energy distance between ``a`` ``[n, d]`` and ``b`` ``[m, d]`` with squared Euclidean distances.

    pertpy's ``EDistance``: ``2·mean‖a_i−b_j‖² − mean‖a_i−a_j‖² − mean‖b_i−b_j‖²``, every mean over
    all pairs including ``i == j``. Computed in O((n+m)·d) from the exact identity
    ``mean‖a_i−b_j‖² = mean‖a‖² + mean‖b‖² − 2·ā·b̄`` (and likewise within a group), under which
    the whole expression reduces to ``2·‖ā − b̄‖²`` (ā, b̄ the group means).
    """
    a, b = _matrices(a=a, b=b)
    diff = _mean(a) - _mean(b)
    return float(2.0 * (diff @ diff))


def _pca_axes(x: np.ndarray, n_pcs: int) -> np.ndarray:
    """Principal axes ``[g, k]`` of ``x`` ``[n, g]`` (centred, unscaled), ``k = min(n_pcs, rank)``.

    Exact and deterministic (no randomised or iterative solver): a dense SVD for small matrices,
    otherwise the top ``k`` eigenvectors (LAPACK ``eigh``) of the smaller of the Gram matrix
    ``Xc·Xcᵀ`` and the scatter matrix ``Xcᵀ·Xc``. Both give the same principal subspace, which is
    all that distances depend on (axis signs are irrelevant).
    """
    xc = x - x.mean(axis=0)
    n, g = xc.shape
    m = min(n, g)
    eps = max(n, g) * np.finfo(np.float64).eps
    if m <= _DENSE_SVD_MAX or n_pcs >= m - 1:
        _, s, vt = np.linalg.svd(xc, full_matrices=False)
        keep = np.flatnonzero(s > (s[0] if s.size else 0.0) * eps)[:n_pcs]
        return vt[keep].T
    gram = xc @ xc.T if n <= g else xc.T @ xc
    lam, vec = scipy_linalg.eigh(gram, subset_by_index=[m - n_pcs, m - 1])
    lam, vec = lam[::-1], vec[:, ::-1]  # descending
    keep = lam > max(lam[0], 0.0) * eps
    lam, vec = lam[keep], vec[:, keep]
    if n <= g:  # left singular vectors -> right ones: v = Xcᵀ·u / s
        vec = xc.T @ vec
        vec /= np.linalg.norm(vec, axis=0)
    return vec


def edistance_ratio(pred: Any, stim: Any, ctrl: Any, n_pcs: int = 50) -> float:
    """``E(P, S) / E(C, S)`` in a PCA with ``n_pcs`` components fitted on ``S ∪ C``.

    pred ``[p, g]``, stim ``[s, g]``, ctrl ``[c, g]``. The number of components is capped by the
    rank of the centred ``S ∪ C``. Below 1: the prediction is closer to the real stimulated cells
    than the control cells are; ``P = C`` gives exactly 1. NaN when ``E(C, S) == 0``.
    """
    pred, stim, ctrl = _matrices(pred=pred, stim=stim, ctrl=ctrl)
    return _edistance_ratio(pred, stim, ctrl, n_pcs)


def _edistance_ratio(pred: np.ndarray, stim: np.ndarray, ctrl: np.ndarray, n_pcs: int) -> float:
    if n_pcs < 1:
        raise ValueError(f"n_pcs must be >= 1, got {n_pcs}")
    axes = _pca_axes(np.vstack([stim, ctrl]), n_pcs)
    ms = _mean(stim) @ axes
    d_ps = _mean(pred) @ axes - ms
    d_cs = _mean(ctrl) @ axes - ms
    den = float(2.0 * (d_cs @ d_cs))
    if den == 0.0:
        return float("nan")
    return float(2.0 * (d_ps @ d_ps)) / den


def _gene_corr(x: np.ndarray) -> np.ndarray:
    """Gene-gene Pearson correlation ``[k, k]`` of ``x`` ``[cells, k]``; constant genes correlate 0."""
    xc = x - x.mean(axis=0)
    norm = np.sqrt((xc * xc).sum(axis=0))
    const = norm <= 1e-12 * np.maximum(np.abs(x).max(axis=0), 1e-300)
    norm[const] = 1.0
    z = xc / norm
    z[:, const] = 0.0
    return np.clip(z.T @ z, -1.0, 1.0)


def gene_correlation_similarity(pred: Any, real: Any, idx: GeneIndex = None) -> float:
    """Pearson correlation between the upper triangles of the gene-gene correlation matrices.

    pred ``[p, g]``, real ``[r, g]``; correlation matrices over the genes ``idx`` (all if None),
    computed across cells. Constant genes get correlation 0 with every other gene (NaN-safe);
    0.0 when either upper triangle is constant (e.g. fewer than 3 genes).
    """
    pred, real = _matrices(pred=pred, real=real)
    return _gene_corr_similarity(pred, real, _index(idx, pred.shape[1]))


def _gene_corr_similarity(pred: np.ndarray, real: np.ndarray, sel: np.ndarray | slice) -> float:
    cp = _gene_corr(pred[:, sel])
    cr = _gene_corr(real[:, sel])
    iu = np.triu_indices(cp.shape[0], k=1)
    return _pearson(cp[iu], cr[iu])


def perturbation_metrics(
    pred: Any,
    stim: Any,
    ctrl: Any,
    genes: Sequence[str],
    *,
    n_top: int = 100,
    n_pcs: int = 50,
    degs: Sequence[str] | None = None,
) -> dict[str, float]:
    """All metrics of EVALUATION.md for one held-out context.

    pred ``[p, g]``, stim ``[s, g]``, ctrl ``[c, g]`` log-normalised; genes: ``g`` unique names.
    ``degs``: a precomputed DEG list (e.g. from :func:`top_degs`, reused across methods); its first
    ``n_top`` names are used. If None, ``top_degs(stim, ctrl, genes, n_top)`` is computed.

    Returns floats under the keys ``r2_mean_all``, ``r2_mean_top{n_top}``, ``pearson_delta``,
    ``pearson_delta_top{n_top}``, ``de_overlap_top{n_top}``, ``edistance_ratio``,
    ``r2_var_top{n_top}`` and ``gene_corr_top{n_top}``.
    """
    pred, stim, ctrl = _matrices(pred=pred, stim=stim, ctrl=ctrl)
    names = _check_gene_names(genes, pred.shape[1])
    if n_top < 1:
        raise ValueError(f"n_top must be >= 1, got {n_top}")
    if degs is None:
        degs = top_degs(stim, ctrl, names, n_top)
    deg_list = list(degs)[:n_top]
    if not deg_list:
        raise ValueError("degs is empty")
    top = _gene_positions(names, deg_list)

    mp, ms, mc = _mean(pred), _mean(stim), _mean(ctrl)
    dp, ds = mp - mc, ms - mc
    t = f"top{n_top}"
    return {
        "r2_mean_all": _pearson(mp, ms) ** 2,
        f"r2_mean_{t}": _pearson(mp[top], ms[top]) ** 2,
        "pearson_delta": _pearson(dp, ds),
        f"pearson_delta_{t}": _pearson(dp[top], ds[top]),
        f"de_overlap_{t}": _de_overlap_from_means(mp, ms, mc, n_top),
        "edistance_ratio": _edistance_ratio(pred, stim, ctrl, n_pcs),
        f"r2_var_{t}": _pearson(pred.var(axis=0)[top], stim.var(axis=0)[top]) ** 2,
        f"gene_corr_{t}": _gene_corr_similarity(pred, stim, top),
    }
