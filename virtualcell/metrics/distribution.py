"""Distribution metrics of docs/evaluation.md (v2): energy distance and MMD in a fixed, out-of-sample PCA space.

For each held-out context, a 50-component PCA (seed 0) is fitted on the cells *outside* that context
(:func:`fit_pca_space`); the real control ``C``, real perturbed ``S`` and predicted ``P`` cells are all
projected into it, so none of them is in sample. In that space:

- :func:`energy_distance` is Székely's energy distance with plain Euclidean distances, the within-set
  terms as U-statistics (diagonal left out): ``2·mean‖x−y‖ − mean_{x≠x'}‖x−x'‖ − mean_{y≠y'}‖y−y'‖``;
  two samples of one distribution score about 0 at any size;
- :func:`mmd2` is the unbiased (U-statistic) MMD² with a sum of RBF kernels
  ``exp(−‖x−y‖² / (2σ²))``, ``σ ∈ {0.5, 1, 2, 4} × median pairwise distance of C ∪ S``;
- :func:`mean_sqdist` is the old squared-Euclidean energy distance, which equals ``2‖mean(x) − mean(y)‖²``
  exactly (a mean-only error, kept only as ``mean_sqdist_ratio``).

The pairwise terms are O(n²): each set is subsampled to at most ``max_cells`` cells (seeded, without
replacement) before them; the means use every cell. Pairwise distances are computed in float64 blocks.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["PCASpace", "fit_pca_space", "energy_distance", "mmd2", "mean_sqdist", "median_distance",
           "subsample", "distribution_ratios", "MMD_SCALES", "MAX_CELLS"]

#: bandwidths of the MMD kernel, as multiples of the median pairwise distance of C ∪ S
MMD_SCALES = (0.5, 1.0, 2.0, 4.0)
#: the O(n²) terms use at most this many cells of each set (seeded subsample)
MAX_CELLS = 2000
_BLOCK = 1024


@dataclasses.dataclass(frozen=True)
class PCASpace:
    """A fitted PCA: ``mean`` [g] and orthonormal ``axes`` [g, k]; :meth:`project` maps [n, g] -> [n, k]."""

    mean: np.ndarray
    axes: np.ndarray

    def project(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) @ self.axes


def fit_pca_space(reference: np.ndarray, n_pcs: int = 50, seed: int = 0, n_iter: int = 7,
                  oversample: int = 20) -> PCASpace:
    """PCA of ``reference`` [n, g] (centred, unscaled) with ``min(n_pcs, n−1, g)`` components.

    Randomised SVD (Halko et al.) with ``n_iter`` power iterations, its random start drawn from
    ``numpy.random.default_rng(seed)``: deterministic for a seed, accurate to float rounding for the
    leading components of expression data. The centred matrix is never materialised.
    """
    x = np.asarray(reference)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"The PCA reference must be [cells >= 2, genes]; got shape {x.shape}.")
    if n_pcs < 1:
        raise ValueError(f"n_pcs must be >= 1, got {n_pcs}")
    dtype = np.float64 if x.dtype == np.float64 else np.float32
    x = x.astype(dtype, copy=False)
    n, g = x.shape
    mean = x.mean(axis=0, dtype=np.float64)
    k = min(n_pcs, n - 1, g)
    width = min(k + oversample, n, g)
    mu = mean.astype(dtype)

    def times(v: np.ndarray) -> np.ndarray:          # (X − 1μᵀ) v   [n, w]
        return x @ v - np.outer(np.ones(n, dtype), mu @ v)

    def times_t(u: np.ndarray) -> np.ndarray:        # (X − 1μᵀ)ᵀ u  [g, w]
        return x.T @ u - np.outer(mu, u.sum(axis=0))

    rng = np.random.default_rng(seed)
    q = np.linalg.qr(times(rng.standard_normal((g, width)).astype(dtype)))[0]
    for _ in range(n_iter):
        q = np.linalg.qr(times_t(q))[0]
        q = np.linalg.qr(times(q))[0]
    small = times_t(q).T.astype(np.float64)          # [w, g] = Qᵀ(X − 1μᵀ)
    _, s, vt = np.linalg.svd(small, full_matrices=False)
    keep = s[:k] > (s[0] if s.size else 0.0) * max(n, g) * np.finfo(np.float64).eps
    axes = vt[:k][keep].T
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(axes.shape[1])])   # a fixed sign per axis
    return PCASpace(mean=mean, axes=axes * np.where(signs == 0, 1.0, signs))


def subsample(x: np.ndarray, max_cells: int | None, rng: np.random.Generator) -> np.ndarray:
    """At most ``max_cells`` rows of ``x`` drawn without replacement (all rows, in order, if fewer)."""
    if max_cells is None or x.shape[0] <= max_cells:
        return x
    return x[np.sort(rng.choice(x.shape[0], size=max_cells, replace=False))]


def _rows(n: int, max_cells: int | None, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of at most ``max_cells`` of ``n`` rows, drawn without replacement (all if fewer)."""
    if max_cells is None or n <= max_cells:
        return np.arange(n)
    return np.sort(rng.choice(n, size=max_cells, replace=False))


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0)


def _pair_sum(a: np.ndarray, b: np.ndarray, fn, same: bool) -> float:
    """Σ_{i,j} fn(‖a_i − b_j‖²) over all pairs, leaving out i == j when ``same`` (a is b)."""
    total = 0.0
    for start in range(0, a.shape[0], _BLOCK):
        block = _sq_dists(a[start:start + _BLOCK], b)
        values = fn(block)
        if same:
            rows = np.arange(block.shape[0])
            values[rows, rows + start] = 0.0
        total += float(values.sum())
    return total


def _check_pair(a: np.ndarray, b: np.ndarray, within: bool) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"Expected two [n, d] arrays with the same d; got {a.shape} and {b.shape}.")
    least = 2 if within else 1
    if a.shape[0] < least or b.shape[0] < least:
        raise ValueError(f"Each set needs at least {least} points; got {a.shape[0]} and {b.shape[0]}.")
    return a, b


def energy_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean energy distance of ``a`` [n, d] and ``b`` [m, d], within-set terms as U-statistics."""
    a, b = _check_pair(a, b, within=True)
    n, m = a.shape[0], b.shape[0]
    between = _pair_sum(a, b, np.sqrt, same=False) / (n * m)
    within_a = _pair_sum(a, a, np.sqrt, same=True) / (n * (n - 1))
    within_b = _pair_sum(b, b, np.sqrt, same=True) / (m * (m - 1))
    return 2.0 * between - within_a - within_b


def mmd2(a: np.ndarray, b: np.ndarray, bandwidths: np.ndarray | list[float]) -> float:
    """Unbiased MMD² of ``a`` [n, d] and ``b`` [m, d], kernel ``Σ_σ exp(−‖x−y‖² / (2σ²))``."""
    a, b = _check_pair(a, b, within=True)
    sigmas = np.asarray(bandwidths, dtype=np.float64)
    if sigmas.size == 0 or not (sigmas > 0).all():
        raise ValueError(f"bandwidths must be positive; got {sigmas.tolist()}.")
    scales = 1.0 / (2.0 * sigmas ** 2)

    def kernel(d2: np.ndarray) -> np.ndarray:
        return sum(np.exp(-s * d2) for s in scales)

    n, m = a.shape[0], b.shape[0]
    return (_pair_sum(a, a, kernel, same=True) / (n * (n - 1)) + _pair_sum(b, b, kernel, same=True) / (m * (m - 1))
            - 2.0 * _pair_sum(a, b, kernel, same=False) / (n * m))


def mean_sqdist(a: np.ndarray, b: np.ndarray) -> float:
    """The old squared-Euclidean energy distance (all pairs), which is exactly ``2‖mean(a) − mean(b)‖²``."""
    a, b = _check_pair(a, b, within=False)
    diff = a.mean(axis=0) - b.mean(axis=0)
    return float(2.0 * diff @ diff)


def median_distance(x: np.ndarray) -> float:
    """Median Euclidean distance over the distinct pairs of rows of ``x`` [n, d] (n ≥ 2)."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] < 2:
        raise ValueError("The median pairwise distance needs at least 2 points.")
    upper = np.triu_indices(x.shape[0], k=1)
    return float(np.median(np.sqrt(_sq_dists(x, x)[upper])))


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den != 0.0 else float("nan")


def distribution_ratios(pred: np.ndarray, stim: np.ndarray, ctrl: np.ndarray, space: PCASpace, *,
                        seed: int = 0, max_cells: int | None = MAX_CELLS) -> dict[str, float]:
    """``edistance_ratio``, ``mmd_ratio`` and ``mean_sqdist_ratio`` of P, S, C [·, g] in ``space``, and
    ``edistance_control`` = E(C, S), the denominator: near 0 (within sampling noise, where the U-statistic
    can even be negative) the perturbation has no measurable effect and every ratio is meaningless.

    Each ratio is ``D(P, S) / D(C, S)`` (below 1: the prediction is closer to the truth than the
    control cells are; NaN when ``D(C, S) == 0``). The O(n²) terms see at most ``max_cells`` cells
    of each set, drawn with ``numpy.random.default_rng(seed)`` (P and C share their rows when P has one
    row per control cell, as the harness's predictions do); the MMD bandwidths come from the
    median pairwise distance of the (subsampled) ``C ∪ S``.
    """
    p, s, c = (space.project(m) for m in (pred, stim, ctrl))
    rng = np.random.default_rng(seed)
    rows_c = _rows(c.shape[0], max_cells, rng)
    # P predicted from C (one row per control cell): the same rows, so that P = C scores exactly 1
    rows_p = rows_c if p.shape[0] == c.shape[0] else _rows(p.shape[0], max_cells, rng)
    ps, cs, ss = p[rows_p], c[rows_c], s[_rows(s.shape[0], max_cells, rng)]
    both = subsample(np.vstack([cs, ss]), max_cells, rng)
    bandwidths = [scale * median_distance(both) for scale in MMD_SCALES]
    if not bandwidths[0] > 0:
        bandwidths = [scale for scale in MMD_SCALES]     # all of C ∪ S in one point: any bandwidth gives 0 / 0
    control_distance = energy_distance(cs, ss)
    return {"edistance_ratio": _ratio(energy_distance(ps, ss), control_distance),
            "mmd_ratio": _ratio(mmd2(ps, ss, bandwidths), mmd2(cs, ss, bandwidths)),
            "mean_sqdist_ratio": _ratio(mean_sqdist(p, s), mean_sqdist(c, s)),
            "edistance_control": control_distance}
