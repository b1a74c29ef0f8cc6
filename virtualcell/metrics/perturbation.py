"""Perturbation-prediction metrics, exactly as defined in docs/evaluation.md (version 2).

Notation: ``P`` predicted stimulated cells ``[p, g]``, ``S`` real stimulated cells ``[s, g]``,
``C`` real control cells ``[c, g]`` of one context, all log-normalised expression of the same
``g`` genes; ``mean(.)`` is the per-gene mean. Every function accepts numpy arrays or scipy
sparse matrices (densified), validates its inputs (2-D, at least one cell, same genes, finite
values; ``ValueError`` otherwise) and returns plain Python floats.

The entry point (used by the benchmark runner and by pipeline selection)::

    perturbation_metrics(pred, stim, ctrl, genes, *, n_top=100, n_pcs=50, degs=None,
                         reference=None, seed=0, max_cells=2000) -> dict[str, float]

returns, for ``n_top=100``: ``r2_mean_all``, ``r2_mean_top100``, ``pearson_delta``,
``pearson_delta_top100``, ``de_overlap_top100`` (higher is better, 1 is perfect);
``edistance_ratio``, ``mmd_ratio``, ``mean_sqdist_ratio`` (``D(P, S) / D(C, S)`` in a 50-PC PCA fitted
on ``reference``, the cells outside the held-out context; lower is better, 0 perfect, 1 = no better
than the control cells; see :mod:`.distribution`); ``edistance_control`` (E(C, S), their denominator:
the size of the real effect; ratios are noise where it is near 0); ``std_ratio_top100`` (1 is right);
``r2_var_top100`` and ``gene_corr_top100`` (higher is better). PERT's ``discrimination`` is in
:mod:`.discrimination` (it needs every target's prediction at once).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import sparse

from .distribution import MAX_CELLS, PCASpace, distribution_ratios, energy_distance, fit_pca_space
from .inputs import GeneIndex
from .inputs import check_gene_names as _check_gene_names
from .inputs import gene_index as _index
from .inputs import gene_positions as _gene_positions
from .inputs import matrices as _matrices

__all__ = [
    "top_degs",
    "pearson",
    "r2_mean",
    "r2_var",
    "pearson_delta",
    "de_overlap",
    "energy_distance",
    "edistance_ratio",
    "std_ratio",
    "PCASpace",
    "fit_pca_space",
    "gene_correlation_similarity",
    "perturbation_metrics",
]


# --------------------------------------------------------------------------- scalar helpers


def _is_constant(x: np.ndarray) -> bool:
    """True if ``x`` is constant up to float rounding (relative to its magnitude)."""
    if x.size < 2:
        return True
    spread = float(np.ptp(x))
    return spread == 0.0 or spread <= 1e-12 * float(np.max(np.abs(x)))


def pearson(x: np.ndarray, y: np.ndarray) -> float:
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
    return pearson(_mean(pred)[sel], _mean(real)[sel]) ** 2


def r2_var(pred: Any, real: Any, idx: GeneIndex = None) -> float:
    """Squared Pearson correlation of per-gene variances (ddof=0) of ``pred`` ``[p, g]`` and ``real`` ``[r, g]``.

    scGen's ``reg_var_plot`` R², over the genes ``idx`` (all if None). 0.0 when either side is constant.
    """
    pred, real = _matrices(pred=pred, real=real)
    sel = _index(idx, pred.shape[1])
    return pearson(pred.var(axis=0)[sel], real.var(axis=0)[sel]) ** 2


def pearson_delta(pred: Any, stim: Any, ctrl: Any, idx: GeneIndex = None) -> float:
    """Pearson correlation of ``mean(P) − mean(C)`` and ``mean(S) − mean(C)`` over genes ``idx``.

    pred ``[p, g]``, stim ``[s, g]``, ctrl ``[c, g]``. Defined as 0.0 when either difference is
    constant, so that predicting "no change" (``P = C``) scores 0.
    """
    pred, stim, ctrl = _matrices(pred=pred, stim=stim, ctrl=ctrl)
    sel = _index(idx, pred.shape[1])
    mc = _mean(ctrl)
    return pearson((_mean(pred) - mc)[sel], (_mean(stim) - mc)[sel])


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


def std_ratio(pred: Any, real: Any, idx: GeneIndex = None) -> float:
    """Mean over genes ``idx`` of the per-gene standard deviation of ``pred`` [p, g], divided by the same for ``real``.

    1 is right; well below 1 is a collapsed prediction, well above 1 an inflated one. NaN when the
    real cells do not vary on those genes.
    """
    pred, real = _matrices(pred=pred, real=real)
    sel = _index(idx, pred.shape[1])
    den = float(real.std(axis=0)[sel].mean())
    return float(pred.std(axis=0)[sel].mean()) / den if den > 0 else float("nan")


def edistance_ratio(pred: Any, stim: Any, ctrl: Any, reference: Any = None, n_pcs: int = 50, seed: int = 0,
                    max_cells: int | None = MAX_CELLS) -> float:
    """Euclidean ``E(P, S) / E(C, S)`` in a ``n_pcs`` PCA (seed ``seed``) fitted on ``reference`` [r, g].

    ``reference`` should be the cells outside the held-out context (docs/evaluation.md); None fits the PCA
    on ``S ∪ C`` (puts C and S in sample: flatters predictions built by shifting C; avoid).
    """
    pred, stim, ctrl = _matrices(pred=pred, stim=stim, ctrl=ctrl)
    space = _space(reference, stim, ctrl, n_pcs, seed)
    return distribution_ratios(pred, stim, ctrl, space, seed=seed, max_cells=max_cells)["edistance_ratio"]


def _space(reference: Any, stim: np.ndarray, ctrl: np.ndarray, n_pcs: int, seed: int) -> PCASpace:
    if n_pcs < 1:
        raise ValueError(f"n_pcs must be >= 1, got {n_pcs}")
    if reference is None:
        return fit_pca_space(np.vstack([stim, ctrl]), n_pcs, seed)
    if isinstance(reference, PCASpace):
        if reference.axes.shape[0] != stim.shape[1]:
            raise ValueError(f"The PCA space has {reference.axes.shape[0]} genes; the matrices have {stim.shape[1]}.")
        return reference
    ref = reference.toarray() if sparse.issparse(reference) else np.asarray(reference)
    if ref.ndim != 2 or ref.shape[1] != stim.shape[1]:
        raise ValueError(f"reference must be [cells, {stim.shape[1]}] like the other matrices; got shape {ref.shape}")
    return fit_pca_space(ref, n_pcs, seed)


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
    return pearson(cp[iu], cr[iu])


def perturbation_metrics(
    pred: Any,
    stim: Any,
    ctrl: Any,
    genes: Sequence[str],
    *,
    n_top: int = 100,
    n_pcs: int = 50,
    degs: Sequence[str] | None = None,
    reference: Any = None,
    seed: int = 0,
    max_cells: int | None = MAX_CELLS,
) -> dict[str, float]:
    """All metrics of docs/evaluation.md (v2) for one held-out context (see the module docstring for the keys).

    pred ``[p, g]``, stim ``[s, g]``, ctrl ``[c, g]`` log-normalised; genes: ``g`` unique names.
    ``degs``: a precomputed DEG list (first ``n_top`` used); None computes ``top_degs(stim, ctrl, genes, n_top)``.
    ``reference``: the cells outside the held-out context ``[r, g]`` or a :class:`PCASpace` already fitted
    on them (reuse it across methods); None fits the PCA on ``S ∪ C`` (not the protocol; avoid).
    ``seed`` seeds the PCA and the ``max_cells`` subsample of each set for the O(n²) terms.
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
    space = _space(reference, stim, ctrl, n_pcs, seed)

    mp, ms, mc = _mean(pred), _mean(stim), _mean(ctrl)
    dp, ds = mp - mc, ms - mc
    t = f"top{n_top}"
    std_real = float(stim.std(axis=0)[top].mean())
    return {
        "r2_mean_all": pearson(mp, ms) ** 2,
        f"r2_mean_{t}": pearson(mp[top], ms[top]) ** 2,
        "pearson_delta": pearson(dp, ds),
        f"pearson_delta_{t}": pearson(dp[top], ds[top]),
        f"de_overlap_{t}": _de_overlap_from_means(mp, ms, mc, n_top),
        **distribution_ratios(pred, stim, ctrl, space, seed=seed, max_cells=max_cells),
        f"std_ratio_{t}": float(pred.std(axis=0)[top].mean()) / std_real if std_real > 0 else float("nan"),
        f"r2_var_{t}": pearson(pred.var(axis=0)[top], stim.var(axis=0)[top]) ** 2,
        f"gene_corr_{t}": _gene_corr_similarity(pred, stim, top),
    }
