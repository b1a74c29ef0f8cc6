"""Statistics computed in streaming passes over batches of cells, so no matrix is ever held whole.

Each accumulator takes batches ``[b, genes]`` (numpy or torch) one at a time, in any order and
any batch size, and merges them exactly (float64 sums; Chan et al.'s pairwise update for the
variance): per-gene mean / variance (:class:`StreamingMoments`), the Seurat highly-variable genes
computed from them (:func:`hvg_seurat`, the same genes as ``scanpy.pp.highly_variable_genes``), a
PCA from the streamed covariance (:class:`StreamingPCA`, :func:`pca_in_passes`); per-(context, condition)
means are streamed as sums (:func:`virtualcell.nn.group_means.group_sums`). :func:`batch_recipe` applies a ``Preprocessing`` recipe to one batch
of raw rows, which is how a loader preprocesses per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from .checks import DataError

__all__ = ["batch_recipe", "StreamingMoments", "StreamingPCA", "pca_in_passes", "hvg_seurat"]


def _dense64(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return x.toarray().astype(np.float64) if sp.issparse(x) else np.asarray(x, dtype=np.float64)


def batch_recipe(preprocessing: Any, var_names: Sequence[str], genes: Sequence[str] | None = None, *,
                 log_space: bool = True, dense: bool = True) -> Callable[[Any], Any]:
    """A per-batch transform: raw rows [b, len(var_names)] (CSR or dense) -> float32 [b, len(genes)].

    Applies ``preprocessing``'s ``normalize_total`` (over all genes of the row, as scanpy) and
    ``log1p``, then picks ``genes`` (default ``preprocessing.genes``, else all) in that order. With
    ``log_space=False`` the log1p step is skipped (raw-scale rows, e.g. for HVG statistics).
    ``dense=False`` keeps CSR rows sparse (a batch over tens of thousands of genes is never densified).
    A gene missing from ``var_names`` is an error naming it.
    """
    names = [str(v) for v in var_names]
    wanted = list(genes if genes is not None else (preprocessing.genes or names))
    where = {g: i for i, g in enumerate(names)}
    missing = [g for g in wanted if g not in where]
    if missing:
        raise DataError(f"{len(missing)} gene(s) the model needs are not in the on-disk matrix's var_names, e.g. "
                        f"{missing[:5]}; every shard must hold the same genes (re-export it with all of them).")
    columns = np.asarray([where[g] for g in wanted], dtype=np.int64)
    identity = columns.size == len(names) and bool((columns == np.arange(len(names))).all())
    target, counts = preprocessing.normalize_total, preprocessing.expects == "counts"

    def transform(raw: Any) -> np.ndarray:
        x = raw.astype(np.float32) if sp.issparse(raw) else np.asarray(raw, dtype=np.float32)
        low = x.data.min(initial=0.0) if sp.issparse(x) else x.min(initial=0.0)
        if counts and low < 0:
            raise DataError(f"The recipe expects non-negative counts, but a batch has negative values (min {low:.3g}).")
        if target:  # as scanpy: float32 counts (summed in float64) / target, then x / that, 0-count rows kept
            factor = np.asarray(x.sum(axis=1, dtype=np.float64)).ravel().astype(np.float32) / np.float32(target)
            factor[factor == 0] = 1
            if sp.issparse(x):
                x = x.tocsr(copy=True)
                x.data /= np.repeat(factor, np.diff(x.indptr))
            else:
                x = x / factor[:, None]
        if preprocessing.log1p and log_space:
            x = x.log1p() if sp.issparse(x) else np.log1p(x)
        if not identity:
            x = x[:, columns]
        if sp.issparse(x) and not dense:
            return x.astype(np.float32).tocsr()
        return np.ascontiguousarray(x.toarray() if sp.issparse(x) else x, dtype=np.float32)

    return transform


class StreamingMoments:
    """Per-gene mean and variance (ddof=1) over batches [b, g], merged exactly (float64)."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, None, None

    def update(self, x: Any) -> "StreamingMoments":
        """Add the rows ``x`` [b, g] (dense, tensor, or CSR: summed sparse, as scanpy's ``_get_mean_var``)."""
        if x.shape[0] == 0:
            return self
        b = x.shape[0]
        if sp.issparse(x):   # sum and sum of squares in float64, never densified
            x = sp.csr_matrix(x, dtype=np.float64)
            mean_b = np.asarray(x.sum(0)).ravel() / b
            m2_b = np.maximum(np.asarray(x.multiply(x).sum(0)).ravel() - b * mean_b**2, 0.0)
        else:
            x = _dense64(x)
            mean_b = x.mean(0)
            m2_b = ((x - mean_b) ** 2).sum(0)
        if self.mean is None:
            self.n, self.mean, self.m2 = b, mean_b, m2_b
            return self
        delta, total = mean_b - self.mean, self.n + b
        self.mean = self.mean + delta * b / total
        self.m2 = self.m2 + m2_b + delta**2 * self.n * b / total
        self.n = total
        return self

    @property
    def var(self) -> np.ndarray:
        return self.m2 / max(self.n - 1, 1)


def hvg_seurat(mean: np.ndarray, var: np.ndarray, var_names: Sequence[str], n_top_genes: int,
               n_bins: int = 20) -> list[str]:
    """Seurat-flavour HVGs (scanpy's ``flavor="seurat"``) from the mean / variance of ``expm1`` of the
    log-normalised data; returns the chosen gene names in ``var_names`` order."""
    mean, var = np.array(mean, dtype=np.float64), np.asarray(var, dtype=np.float64)
    if n_top_genes >= len(var_names):
        return [str(g) for g in var_names]
    mean[mean == 0] = 1e-12
    dispersion = var / mean
    dispersion[dispersion == 0] = np.nan
    dispersion = np.log(dispersion)
    frame = pd.DataFrame({"means": np.log1p(mean), "dispersions": dispersion})
    frame["mean_bin"] = pd.cut(frame["means"], bins=n_bins)
    stats = frame.groupby("mean_bin", observed=True)["dispersions"].agg(avg="mean", dev="std")
    single = stats["dev"].isnull()
    stats.loc[single, "dev"] = stats.loc[single, "avg"]
    stats.loc[single, "avg"] = 0
    per_gene = stats.loc[frame["mean_bin"]].set_index(frame.index)
    norm = ((frame["dispersions"] - per_gene["avg"]) / per_gene["dev"]).to_numpy()
    finite = np.sort(norm[~np.isnan(norm)])[::-1]
    cutoff = finite[min(n_top_genes, finite.size) - 1]
    keep = np.nan_to_num(norm, nan=-np.inf) >= cutoff
    return [str(g) for g, k in zip(var_names, keep) if k]


class StreamingPCA:
    """PCA from the streamed mean and covariance [g, g] (float64, Chan's merge): exact, memory O(g^2).

    ``result()`` returns ``mean`` [g], ``components`` [k, g] (k = min(n_components, cells, genes)) and
    ``explained_variance`` [k]; each component is signed so its largest-magnitude loading is positive.
    A second pass (:meth:`flip_signs`, or :func:`pca_in_passes` for both) signs them as the in-memory
    :func:`virtualcell.nn.pca.fit_pca` does (scikit-learn's ``svd_flip``: the cell with the largest
    absolute score gets a positive one), so a fit from disk gives that fit's components.
    """

    def __init__(self, n_components: int) -> None:
        self.k, self.n, self.mean, self.comoment = n_components, 0, None, None

    def update(self, x: Any) -> "StreamingPCA":
        x = _dense64(x)
        if x.shape[0] == 0:
            return self
        b, mean_b = x.shape[0], x.mean(0)
        centred = x - mean_b
        comoment_b = centred.T @ centred
        if self.mean is None:
            self.n, self.mean, self.comoment = b, mean_b, comoment_b
            return self
        delta, total = mean_b - self.mean, self.n + b
        self.comoment += comoment_b + np.outer(delta, delta) * (self.n * b / total)
        self.mean = self.mean + delta * b / total
        self.n = total
        return self

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.n < 2:
            raise ValueError("StreamingPCA needs at least 2 cells.")
        values, vectors = np.linalg.eigh(self.comoment)
        order = np.argsort(values)[::-1][:min(self.k, self.n, self.comoment.shape[0])]
        components = vectors[:, order].T
        signs = np.sign(components[np.arange(order.size), np.abs(components).argmax(1)])
        components *= np.where(signs == 0, 1, signs)[:, None]
        variance = values[order].clip(min=0) / (self.n - 1)
        return (torch.from_numpy(self.mean).float(), torch.from_numpy(np.ascontiguousarray(components)).float(),
                torch.from_numpy(variance).float())

    @staticmethod
    def flip_signs(mean: torch.Tensor, components: torch.Tensor, batches: Iterable[Any]) -> torch.Tensor:
        """``components`` [k, g] signed as ``svd_flip``: a pass over ``batches`` (the cells in their order)
        finds, per component, the cell with the largest absolute score (the first on ties) and makes it positive."""
        mu, vt = mean.double().cpu().numpy(), components.double().cpu().numpy()
        best, sign = np.full(vt.shape[0], -1.0), np.ones(vt.shape[0])
        for x in batches:
            scores = (_dense64(x) - mu) @ vt.T
            if scores.shape[0] == 0:
                continue
            where = np.abs(scores).argmax(0)
            top = scores[where, np.arange(vt.shape[0])]
            better = np.abs(top) > best
            best[better], sign[better] = np.abs(top[better]), np.where(top[better] < 0, -1.0, 1.0)
        return (components * torch.from_numpy(sign).to(components)[:, None]).contiguous()


def pca_in_passes(batches: Callable[[], Iterable[Any]], n_components: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The PCA of the cells that ``batches()`` yields ([b, g] each, same order every call), in two passes:
    :class:`StreamingPCA` then its ``svd_flip`` signs. Same ``(mean, components, explained_variance)`` as
    ``fit_pca`` on the stacked cells, up to float rounding (exact, never a randomized SVD)."""
    pca = StreamingPCA(n_components)
    for x in batches():
        pca.update(x)
    mean, components, variance = pca.result()
    return mean, StreamingPCA.flip_signs(mean, components, batches()), variance
