"""Metrics v2 (docs/evaluation.md): energy distance, MMD, the PCA space, std ratio, discrimination, noise ceiling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from virtualcell.metrics.discrimination import discrimination
from virtualcell.metrics.distribution import (
    distribution_ratios,
    energy_distance,
    fit_pca_space,
    mean_sqdist,
    median_distance,
    mmd2,
)
from virtualcell.metrics.perturbation import std_ratio
from virtualcell.metrics.ceiling import noise_ceiling, sampled_calibration, split_halves


def test_energy_distance_hand():
    # 1-D a = {0, 1}, b = {3, 4}: between pairs 3, 4, 2, 3 -> mean 3; within (i != j) 1 and 1 -> E = 2·3 − 1 − 1 = 4
    assert energy_distance(np.array([[0.0], [1.0]]), np.array([[3.0], [4.0]])) == pytest.approx(4.0)
    # a = {0, 2}, b = {1, 5}: between 1, 5, 1, 3 -> 2.5; within 2 and 4 -> E = 5 − 2 − 4 = −1 (a U-statistic can be < 0)
    assert energy_distance(np.array([[0.0], [2.0]]), np.array([[1.0], [5.0]])) == pytest.approx(-1.0)
    # 2-D, Euclidean (not squared): a = {(0,0), (0,0)}, b = {(3,4), (3,4)} -> 2·5 − 0 − 0
    a, b = np.zeros((2, 2)), np.array([[3.0, 4.0], [3.0, 4.0]])
    assert energy_distance(a, b) == pytest.approx(10.0)


def _energy_brute(a, b):
    between = np.mean([np.linalg.norm(x - y) for x in a for y in b])
    within = [np.mean([np.linalg.norm(x[i] - x[j]) for i in range(len(x)) for j in range(len(x)) if i != j])
              for x in (a, b)]
    return 2 * between - within[0] - within[1]


def test_energy_distance_matches_brute_force_across_blocks(monkeypatch):
    import virtualcell.metrics.distribution as distribution

    monkeypatch.setattr(distribution, "_BLOCK", 5)        # several blocks, and the diagonal across them
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(17, 4)), rng.normal(0.5, 2.0, size=(11, 4))
    assert energy_distance(a, b) == pytest.approx(_energy_brute(a, b), rel=1e-10)


def test_two_samples_of_one_distribution_score_about_zero():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 5)), rng.normal(size=(400, 5))
    shifted = rng.normal(0.5, 1.0, size=(400, 5))
    assert abs(energy_distance(a, b)) < 0.03 < energy_distance(shifted, b)
    bandwidths = [median_distance(np.vstack([a, b]))]
    assert abs(mmd2(a, b, bandwidths)) < 0.01 < mmd2(shifted, b, bandwidths)
    # same mean, wrong spread: the mean-only form is blind to it, the energy distance is not
    narrow = rng.normal(0.0, 0.3, size=(400, 5))
    assert mean_sqdist(narrow, b) < 0.05 and energy_distance(narrow, b) > 0.3


def test_squared_form_equals_twice_the_squared_mean_difference():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(13, 3)), rng.normal(1.0, 2.0, size=(7, 3))
    all_pairs = np.mean([((x - y) ** 2).sum() for x in a for y in b])
    within = [np.mean([((x - y) ** 2).sum() for x in s for y in s]) for s in (a, b)]
    old = 2 * all_pairs - within[0] - within[1]                      # pertpy's squared form, all pairs
    diff = a.mean(0) - b.mean(0)
    assert mean_sqdist(a, b) == pytest.approx(old, rel=1e-10)
    assert mean_sqdist(a, b) == pytest.approx(2 * diff @ diff, rel=1e-12)


def test_mmd_hand():
    # a = b = {0, 1}, one bandwidth σ = 1, e = exp(−1/2): within terms e and e, between (1 + e + e + 1)/4
    e = math.exp(-0.5)
    pts = np.array([[0.0], [1.0]])
    assert mmd2(pts, pts, [1.0]) == pytest.approx(e - 1.0)
    # a = {0, 0}, b = {1, 1}: within 1 and 1, between e -> 2 − 2e; two bandwidths add their kernels
    zeros, ones = np.zeros((2, 1)), np.ones((2, 1))
    assert mmd2(zeros, ones, [1.0]) == pytest.approx(2 - 2 * e)
    assert mmd2(zeros, ones, [1.0, 2.0]) == pytest.approx(2 - 2 * e + 2 - 2 * math.exp(-1 / 8))
    with pytest.raises(ValueError, match="positive"):
        mmd2(zeros, ones, [0.0])


def test_median_distance_hand():
    # points 0, 1, 3: distances 1, 3, 2 -> median 2
    assert median_distance(np.array([[0.0], [1.0], [3.0]])) == pytest.approx(2.0)


def test_pca_space_matches_the_exact_subspace_and_is_seeded():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 40)) @ rng.normal(size=(40, 60)) + rng.normal(0, 0.1, size=(300, 60))
    space = fit_pca_space(x, n_pcs=10, seed=0)
    _, _, vt = np.linalg.svd(x - x.mean(0), full_matrices=False)
    cosines = np.linalg.svd(space.axes.T @ vt[:10].T, compute_uv=False)
    assert cosines.min() > 1 - 1e-6
    np.testing.assert_array_equal(space.axes, fit_pca_space(x, n_pcs=10, seed=0).axes)
    assert fit_pca_space(x[:5], n_pcs=50).axes.shape == (60, 4)        # capped at n − 1 components
    np.testing.assert_allclose(space.project(x).mean(0), 0.0, atol=1e-9)


def test_ratios_use_the_reference_space_and_control_scores_one():
    rng = np.random.default_rng(5)
    reference = rng.normal(size=(200, 8))
    ctrl, stim = rng.normal(size=(60, 8)), rng.normal(1.0, 1.0, size=(60, 8))
    space = fit_pca_space(reference, n_pcs=3)
    same = distribution_ratios(ctrl, stim, ctrl, space)
    assert same == pytest.approx({"edistance_ratio": 1.0, "mmd_ratio": 1.0, "mean_sqdist_ratio": 1.0,
                                  "edistance_control": energy_distance(space.project(ctrl), space.project(stim))})
    # the mean-only ratio equals the squared mean difference in that space
    pred = ctrl + 0.5
    p, s, c = (space.project(m) for m in (pred, stim, ctrl))
    expected = ((p.mean(0) - s.mean(0)) ** 2).sum() / ((c.mean(0) - s.mean(0)) ** 2).sum()
    assert distribution_ratios(pred, stim, ctrl, space)["mean_sqdist_ratio"] == pytest.approx(expected)
    # subsampling for the O(n²) terms is seeded
    small = distribution_ratios(pred, stim, ctrl, space, seed=3, max_cells=20)
    assert small == distribution_ratios(pred, stim, ctrl, space, seed=3, max_cells=20)
    # P = C scores exactly 1 under subsampling too (P and C share their subsampled rows)
    subsampled = distribution_ratios(ctrl, stim, ctrl, space, seed=3, max_cells=20)
    assert subsampled["edistance_ratio"] == 1.0 and subsampled["mmd_ratio"] == 1.0


def test_std_ratio_hand():
    pred = np.array([[0.0, 0.0], [2.0, 4.0]])       # std 1, 2
    real = np.array([[0.0, 0.0], [4.0, 4.0]])       # std 2, 2
    assert std_ratio(pred, real) == pytest.approx(0.75)
    assert std_ratio(pred, real, [1]) == pytest.approx(1.0)


def test_discrimination_perfect_constant_and_hand():
    rng = np.random.default_rng(6)
    real = {f"t{i}": rng.normal(i, 1.0, size=(20, 6)) for i in range(9)}
    assert set(discrimination(real, real).values()) == {0.0}
    constant = {t: np.full(6, 3.3) for t in real}
    assert np.mean(list(discrimination(constant, real).values())) == pytest.approx(0.5)
    # hand: real bulks 0, 1, 2 (1 gene); predictions 0.9, 1.2, 0.1 -> ranks 1, 0, 2 -> 1/2, 0, 1
    bulks = {"a": np.array([0.0]), "b": np.array([1.0]), "c": np.array([2.0])}
    pred = {"a": np.array([0.9]), "b": np.array([1.2]), "c": np.array([0.1])}
    assert discrimination(pred, bulks) == pytest.approx({"a": 0.5, "b": 0.0, "c": 1.0})
    with pytest.raises(ValueError, match="same targets"):
        discrimination({"a": np.zeros(1)}, bulks)


def test_noise_ceiling_is_seeded_and_near_perfect():
    rng = np.random.default_rng(7)
    genes = [f"g{i}" for i in range(12)]
    ctrl = rng.normal(size=(80, 12))
    stim = rng.normal(size=(80, 12)) + np.linspace(0.0, 6.0, 12)
    first, second = split_halves(80, seed=0)
    assert len(first) == len(second) == 40 and not set(first) & set(second)
    np.testing.assert_array_equal(first, split_halves(80, seed=0)[0])
    space = fit_pca_space(rng.normal(size=(100, 12)), n_pcs=5)
    scores, half_a, half_b = noise_ceiling(stim, ctrl, genes, degs=genes[-3:], n_top=3, space=space, seed=0)
    assert scores["r2_mean_all"] > 0.9 and abs(scores["edistance_ratio"]) < 0.1
    np.testing.assert_array_equal(np.vstack([half_a, half_b]), stim[np.r_[first, second]])
    assert 0.7 < scores["std_ratio_top3"] < 1.3
    with pytest.raises(ValueError, match="at least 4"):
        split_halves(3, seed=0)


def test_sampled_calibration_keys_and_coverage():
    rng = np.random.default_rng(8)
    samples = rng.normal(size=(40, 30, 5))               # 40 populations of 30 cells; truth mean 0
    real = rng.normal(size=(2000, 5)) * 0.01
    scores = sampled_calibration(samples, real, [f"g{i}" for i in range(5)], ["g0", "g1"])
    assert set(scores) == {"coverage90", "interval_width90", "coverage90_all", "interval_width90_all"}
    assert scores["coverage90"] == 1.0 and 0.3 < scores["interval_width90"] < 1.0
