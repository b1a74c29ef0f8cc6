"""Tests of virtualcell.metrics.perturbation and .plots on tiny hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import sparse, stats

from virtualcell.metrics.perturbation import (
    de_overlap,
    edistance_ratio,
    gene_correlation_similarity,
    pearson_delta,
    perturbation_metrics,
    r2_mean,
    r2_var,
    top_degs,
)
from virtualcell.evaluate.plots import coverage_curves, mean_scatter, metrics_bar

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def synthetic():
    """60 genes, 40 stim / 40 ctrl cells; genes g3, g7, g11 strongly up in stim."""
    rng = np.random.default_rng(0)
    n_genes = 60
    genes = [f"g{i}" for i in range(n_genes)]
    base = rng.uniform(0.5, 2.0, n_genes)
    ctrl = base + rng.normal(0, 0.3, (40, n_genes))
    shift = np.zeros(n_genes)
    shift[[3, 7, 11]] = 3.0
    stim = base + shift + rng.normal(0, 0.3, (40, n_genes))
    return genes, stim, ctrl


# ----------------------------------------------------------------------------- r2


def test_r2_mean_hand():
    # mean(pred) = [1, 3, 2], mean(real) = [1, 2, 3]
    # centred: [-1, 1, 0] and [-1, 0, 1]; cov sum = 1, ss = 2 and 2 -> r = 1/2, r² = 0.25
    pred = np.array([[0.0, 2.0, 1.0], [2.0, 4.0, 3.0]])
    real = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    assert r2_mean(pred, real) == pytest.approx(0.25)
    # genes 0, 1 only: means [1, 3] vs [1, 2] -> perfectly correlated
    assert r2_mean(pred, real, idx=[0, 1]) == pytest.approx(1.0)
    assert r2_mean(pred, real, idx=np.array([True, True, False])) == pytest.approx(1.0)
    # sparse input gives the same
    assert r2_mean(sparse.csr_matrix(pred), sparse.csr_matrix(real)) == pytest.approx(0.25)


def test_r2_mean_matches_linregress():
    rng = np.random.default_rng(1)
    pred = rng.normal(size=(30, 50))
    real = pred + rng.normal(scale=0.8, size=(30, 50))
    expected = stats.linregress(real.mean(0), pred.mean(0)).rvalue ** 2
    assert r2_mean(pred, real) == pytest.approx(expected, rel=1e-12)


def test_r2_var_hand():
    # var(pred, ddof=0) = [1, 4, 9], var(real) = [1, 9, 4]; both means 14/3
    # centred x = [-11, -2, 13]/3, y = [-11, 13, -2]/3 -> cov sum = 69/9, ss = 294/9 each
    # r = 69/294 -> r² = (69/294)² ≈ 0.05508
    pred = np.array([[0.0, 0.0, 0.0], [2.0, 4.0, 6.0]])
    real = np.array([[0.0, 0.0, 0.0], [2.0, 6.0, 4.0]])
    assert r2_var(pred, real) == pytest.approx((69 / 294) ** 2)


# ----------------------------------------------------------------------------- pearson_delta


def test_pearson_delta_hand():
    # mean(C) = [1, 1, 1]; mean(S) = [2, 3, 1] -> ΔS = [1, 2, 0]; mean(P) = [2, 2, 1] -> ΔP = [1, 1, 0]
    # centred ΔP = [1, 1, -2]/3, ΔS = [0, 1, -1]; cov sum = 1, ss = 2/3 and 2 -> r = 1/sqrt(4/3) = √3/2
    ctrl = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    stim = np.array([[2.0, 3.0, 1.0], [2.0, 3.0, 1.0]])
    pred = np.array([[1.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    assert pearson_delta(pred, stim, ctrl) == pytest.approx(math.sqrt(3) / 2)
    # genes 0 and 1: ΔP = [1, 1] is constant -> 0 by definition
    assert pearson_delta(pred, stim, ctrl, idx=[0, 1]) == 0.0


def test_pearson_delta_constant_is_zero(synthetic):
    _, stim, ctrl = synthetic
    assert pearson_delta(ctrl, stim, ctrl) == 0.0  # "no change" prediction
    assert pearson_delta(ctrl + 0.7, stim, ctrl) == 0.0  # constant shift, rounding-safe
    assert pearson_delta(stim, ctrl, ctrl) == 0.0  # real side constant
    assert pearson_delta(stim, stim, ctrl) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- de_overlap


def test_de_overlap_hand():
    # ΔP = [3, 0, -2, 1] -> top-2 by |Δ| = {0, 2}; ΔS = [0.5, -4, 3, 0] -> top-2 = {1, 2}
    # overlap {2} -> 1/2
    ctrl = np.zeros((2, 4))
    pred = np.array([[3.0, 0.0, -2.0, 1.0]])
    stim = np.array([[0.5, -4.0, 3.0, 0.0]])
    assert de_overlap(pred, stim, ctrl, n=2) == pytest.approx(0.5)
    assert de_overlap(stim, stim, ctrl, n=2) == pytest.approx(1.0)
    assert de_overlap(pred, stim, ctrl, n=10) == pytest.approx(1.0)  # n capped at 4 genes


# ----------------------------------------------------------------------------- gene correlation


def test_gene_correlation_similarity_hand():
    # real genes over 3 cells: g0 = [1,2,3], g1 = [1,2,3], g2 = [3,2,1]
    #   -> upper triangle (01, 02, 12) = [1, -1, -1]
    # pred: g0 = [1,2,3], g1 = [3,2,1], g2 = [3,2,1] -> [-1, -1, 1]
    # centred [4,-2,-2]/3 and [-2,-2,4]/3: cov sum = -12/9, ss = 24/9 each -> r = -0.5
    real = np.array([[1.0, 1.0, 3.0], [2.0, 2.0, 2.0], [3.0, 3.0, 1.0]])
    pred = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0], [3.0, 1.0, 1.0]])
    assert gene_correlation_similarity(pred, real, [0, 1, 2]) == pytest.approx(-0.5)
    assert gene_correlation_similarity(real, real, [0, 1, 2]) == pytest.approx(1.0)
    # constant pred gene g2 -> its correlations are 0: pred triangle [-1, 0, 0]
    # centred [-2,1,1]/3 vs [4,-2,-2]/3 -> r = -1
    pred_const = pred.copy()
    pred_const[:, 2] = 5.0
    assert gene_correlation_similarity(pred_const, real, [0, 1, 2]) == pytest.approx(-1.0)


# ----------------------------------------------------------------------------- DEGs / all metrics


def test_top_degs_finds_planted_genes(synthetic):
    genes, stim, ctrl = synthetic
    degs = top_degs(stim, ctrl, genes, n=3)
    assert set(degs) == {"g3", "g7", "g11"}
    assert len(top_degs(stim, ctrl, genes, n=10)) == 10


def test_perturbation_metrics(synthetic):
    genes, stim, ctrl = synthetic
    degs = top_degs(stim, ctrl, genes, n=10)
    keys = {
        "r2_mean_all", "r2_mean_top10", "pearson_delta", "pearson_delta_top10", "de_overlap_top10",
        "edistance_ratio", "mmd_ratio", "mean_sqdist_ratio", "edistance_control", "std_ratio_top10", "r2_var_top10",
        "gene_corr_top10",
    }
    ratios = {"edistance_ratio", "mmd_ratio", "mean_sqdist_ratio"}
    reference = np.vstack([ctrl, stim])[::3] + 0.1      # stands for the cells outside the context
    perfect = perturbation_metrics(stim, stim, ctrl, genes, n_top=10, degs=degs, reference=reference)
    assert set(perfect) == keys
    assert all(type(v) is float for v in perfect.values())
    for k in keys - ratios - {"edistance_control"}:
        assert perfect[k] == pytest.approx(1.0), k
    assert perfect["edistance_control"] > 1.0          # the planted effect
    assert perfect["mean_sqdist_ratio"] == pytest.approx(0.0, abs=1e-12)
    # P = S exactly: the U-statistics leave out the zero diagonal, so the ratio is slightly below 0
    assert -0.05 < perfect["edistance_ratio"] <= 0.0 and -0.05 < perfect["mmd_ratio"] <= 0.0

    none = perturbation_metrics(ctrl, stim, ctrl, genes, n_top=10, degs=degs, reference=reference)
    assert none["pearson_delta"] == 0.0
    assert none["pearson_delta_top10"] == 0.0
    for k in ratios:
        assert none[k] == pytest.approx(1.0), k
    assert none["edistance_ratio"] == pytest.approx(edistance_ratio(ctrl, stim, ctrl, reference))
    idx = [genes.index(g) for g in degs]
    assert none["std_ratio_top10"] == pytest.approx(ctrl[:, idx].std(0).mean() / stim[:, idx].std(0).mean())
    assert none["r2_mean_all"] == pytest.approx(r2_mean(ctrl, stim))
    idx = [genes.index(g) for g in degs]
    assert none["r2_mean_top10"] == pytest.approx(r2_mean(ctrl, stim, idx))
    assert none["r2_var_top10"] == pytest.approx(r2_var(ctrl, stim, idx))
    assert none["gene_corr_top10"] == pytest.approx(gene_correlation_similarity(ctrl, stim, idx))

    # DEGs computed internally when not given
    auto = perturbation_metrics(ctrl, stim, ctrl, genes, n_top=10, reference=reference)
    assert auto == pytest.approx(none)


# ----------------------------------------------------------------------------- validation


def test_errors():
    good = np.ones((3, 4))
    with pytest.raises(ValueError, match="NaN"):
        r2_mean(np.array([[1.0, np.nan, 2.0, 3.0]]), good)
    with pytest.raises(ValueError, match="empty"):
        pearson_delta(np.empty((0, 4)), good, good)
    with pytest.raises(ValueError, match="mismatched number of genes"):
        edistance_ratio(good, np.ones((3, 5)), good)
    with pytest.raises(ValueError, match="reference must be"):
        perturbation_metrics(good, good, good, list("abcd"), degs=["a"], reference=np.ones((5, 3)))
    with pytest.raises(ValueError, match="genes has 3 names"):
        perturbation_metrics(good, good, good, ["a", "b", "c"], degs=["a"])
    with pytest.raises(ValueError, match="not in genes"):
        perturbation_metrics(good, good, good, list("abcd"), degs=["zz"])
    with pytest.raises(ValueError, match="2-D"):
        r2_var(np.ones(4), good)
    with pytest.raises(ValueError, match="out of range"):
        r2_mean(good, good, idx=[7])


# ----------------------------------------------------------------------------- plots


def test_plots_write_png(synthetic, tmp_path):
    genes, stim, ctrl = synthetic
    degs = ["g3", "g7", "g11"]
    out = tmp_path / "scatter.png"
    fig = mean_scatter(ctrl + 0.1, stim, genes, degs=degs, highlight=["g0"], title="CD4T", path=out)
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert "R²" in fig.axes[0].get_title()

    table = {
        "mean-shift": {"CD4T": 0.8, "B": 0.9},
        "control": {"CD4T": {"r2_mean_all": 0.85}, "B": {"r2_mean_all": 0.81}},
    }
    out2 = tmp_path / "bar.png"
    metrics_bar(table, "r2_mean_all", path=out2)
    assert out2.read_bytes()[:8] == PNG_MAGIC

    out3 = tmp_path / "coverage.png"
    fig = coverage_curves({"CD4T": {0.5: 0.45, 0.9: 0.86}, "NK": {0.9: 0.76, 0.5: 0.39}}, path=out3)
    assert out3.read_bytes()[:8] == PNG_MAGIC
    ys = [list(line.get_ydata()) for line in fig.axes[0].get_lines()[1:]]
    assert ys == [[0.45, 0.86], [0.39, 0.76]]          # sorted by level, one line per context after the diagonal
    with pytest.raises(ValueError, match="empty"):
        coverage_curves({})
