"""Tests for the synthetic data generators (virtualcell.data.simulate)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from virtualcell.data.simulate import (
    expected_relu_mean,
    ground_truth_mean,
    hill,
    logistic_progress,
    simulate_perturbation,
    simulate_time_course,
)
from virtualcell.evaluate.report import write_h5ad


def _group_mean(adata, cell_type: str, condition: str, dose: float | None = None) -> np.ndarray:
    mask = (adata.obs["cell_type"] == cell_type) & (adata.obs["condition"] == condition)
    if dose is not None:
        mask &= adata.obs["dose"] == dose
    return np.asarray(adata.X[mask.to_numpy()]).mean(0)


def _assert_identical(a, b) -> None:
    np.testing.assert_array_equal(a.X, b.X)
    pd.testing.assert_frame_equal(a.obs, b.obs)
    assert list(a.var_names) == list(b.var_names)
    assert json.dumps(a.uns["ground_truth"], sort_keys=True) == json.dumps(b.uns["ground_truth"], sort_keys=True)


# --------------------------------------------------------------------------------------------
# simulate_perturbation
# --------------------------------------------------------------------------------------------
def test_shapes_labels_and_dtype():
    a = simulate_perturbation(n_cells_per_group=20, n_genes=30, n_cell_types=4,
                              conditions=("ctrl", "drugA", "drugB"))
    assert a.shape == (4 * 3 * 20, 30)
    assert a.X.dtype == np.float32 and isinstance(a.X, np.ndarray)
    assert (a.X >= 0).all()
    assert list(a.var_names) == [f"gene_{g}" for g in range(30)]
    assert a.obs_names.is_unique
    cond = a.obs["condition"]
    assert isinstance(cond.dtype, pd.CategoricalDtype)
    assert list(cond.cat.categories) == ["ctrl", "drugA", "drugB"]
    assert list(a.obs["cell_type"].cat.categories) == [f"type_{k}" for k in range(4)]
    assert a.obs.groupby(["cell_type", "condition"], observed=True).size().eq(20).all()
    assert "dose" not in a.obs


def test_same_seed_identical_different_seed_differs():
    _assert_identical(simulate_perturbation(seed=3), simulate_perturbation(seed=3))
    _assert_identical(simulate_perturbation(seed=3, counts=True), simulate_perturbation(seed=3, counts=True))
    a, b = simulate_perturbation(seed=0), simulate_perturbation(seed=1)
    assert not np.allclose(a.X, b.X)
    assert a.uns["ground_truth"]["means"] != b.uns["ground_truth"]["means"]


def test_ground_truth_json_and_structure():
    a = simulate_perturbation(n_cells_per_group=10, n_genes=40, conditions=("control", "s1", "s2"))
    gt = a.uns["ground_truth"]
    json.dumps(gt)  # JSON-able
    assert gt["control"] == "control"
    for ct in a.obs["cell_type"].cat.categories:
        for cond in ("control", "s1", "s2"):
            assert len(gt["means"][ct][cond]) == 40
            assert ground_truth_mean(a, ct, cond).shape == (40,)
    # 20 % of 40 genes are shared DE genes; type-specific ones come on top
    for cond in ("s1", "s2"):
        assert len(gt["de_genes_shared"][cond]) == 8
        assert set(gt["de_genes_shared"][cond]) <= set(gt["de_genes"][cond])
        assert len(gt["de_genes"][cond]) > 8
        assert set(gt["de_genes"][cond]) <= set(a.var_names)
    assert gt["de_genes"]["control"] == []
    # genes outside the DE list have no effect at all
    non_de = ~a.var_names.isin(gt["de_genes"]["s1"])
    eff = np.array([gt["effects"][ct]["s1"] for ct in gt["cell_types"]])  # [types, genes]
    assert np.all(eff[:, non_de] == 0) and np.all(np.any(eff[:, ~non_de] != 0, axis=0))
    with pytest.raises(KeyError, match="unknown condition"):
        ground_truth_mean(a, "type_0", "nope")


def test_baseline_realistic_spread():
    gt = simulate_perturbation(n_genes=200, n_cells_per_group=2, seed=5).uns["ground_truth"]
    mu = np.asarray(gt["profiles"]["type_0"]["control"])
    assert mu.min() >= 0
    assert (mu < 0.2).mean() > 0.05  # some genes near zero
    assert mu.max() > 2.0 and mu.std() > 0.5


def test_ground_truth_matches_empirical_means():
    n = 400
    a = simulate_perturbation(n_cells_per_group=n, n_genes=40, n_cell_types=2, seed=11)
    sd = np.asarray(a.uns["ground_truth"]["noise_sd"])
    for ct in ("type_0", "type_1"):
        for cond in ("control", "stimulated"):
            err = np.abs(_group_mean(a, ct, cond) - ground_truth_mean(a, ct, cond))
            assert np.all(err < 5 * sd / np.sqrt(n)), (ct, cond, err.max())
    # the effect is real: stimulated differs from control on DE genes
    de = a.var_names.isin(a.uns["ground_truth"]["de_genes"]["stimulated"])
    shift = np.abs(ground_truth_mean(a, "type_0", "stimulated") - ground_truth_mean(a, "type_0", "control"))
    assert shift[de].mean() > 0.4 and shift[~de].max() == 0


def test_effect_size_and_heterogeneity():
    def effects(**kw):
        gt = simulate_perturbation(n_cells_per_group=2, n_genes=60, seed=2, **kw).uns["ground_truth"]
        return np.array([gt["effects"][ct]["stimulated"] for ct in gt["cell_types"]])

    e1, e2 = effects(effect_size=1.0), effects(effect_size=2.0)
    np.testing.assert_allclose(e2, 2 * e1)
    homo = effects(heterogeneity=0.0)
    np.testing.assert_allclose(homo, np.broadcast_to(homo[0], homo.shape))  # identical shift
    assert not np.allclose(e1[0], e1[1])  # heterogeneous by default
    zero = simulate_perturbation(n_cells_per_group=2, effect_size=0.0).uns["ground_truth"]
    assert zero["de_genes"]["stimulated"] == []


def test_doses_hill_curve():
    doses = [0.1, 1.0, 10.0]
    a = simulate_perturbation(n_cells_per_group=300, n_genes=30, n_cell_types=1, doses=doses, seed=4)
    assert set(a.obs.loc[a.obs["condition"] == "control", "dose"]) == {0.0}
    stim = a.obs["condition"] == "stimulated"
    assert sorted(set(a.obs.loc[stim, "dose"])) == doses
    assert a.obs.loc[stim].groupby("dose").size().eq(100).all()
    gt = a.uns["ground_truth"]
    json.dumps(gt)
    assert gt["dose_response"]["ec50"] == 1.0
    ctrl = ground_truth_mean(a, "type_0", "control")
    shifts = [np.abs(ground_truth_mean(a, "type_0", "stimulated", dose=d) - ctrl).sum() for d in doses]
    assert shifts[0] < shifts[1] < shifts[2]  # monotone in dose
    np.testing.assert_allclose(hill(np.array(doses), 1.0), [0.01 / 1.01, 0.5, 100 / 101])
    sd = np.asarray(gt["noise_sd"])
    for d in doses:
        err = np.abs(_group_mean(a, "type_0", "stimulated", d) - ground_truth_mean(a, "type_0", "stimulated", d))
        assert np.all(err < 5 * sd / np.sqrt(100))
    # the group-level mean is the average over the doses present
    err = np.abs(_group_mean(a, "type_0", "stimulated") - ground_truth_mean(a, "type_0", "stimulated"))
    assert np.all(err < 5 * sd / np.sqrt(300))


def test_counts_mode_integers_and_recoverable_log_space():
    a = simulate_perturbation(n_cells_per_group=200, n_genes=30, n_cell_types=1, counts=True, seed=9)
    X = a.X
    assert (X >= 0).all() and np.array_equal(X, np.round(X))
    assert X.sum() > 0 and "size_factor" in a.obs
    logx = np.log1p(X / a.obs["size_factor"].to_numpy()[:, None])
    emp = logx[(a.obs["condition"] == "control").to_numpy()].mean(0)
    truth = ground_truth_mean(a, "type_0", "control")
    assert np.corrcoef(emp, truth)[0, 1] > 0.95


def test_expected_relu_mean_monte_carlo():
    rng = np.random.default_rng(0)
    m, s = np.array([-1.0, 0.0, 0.3, 2.0]), np.array([0.5, 0.4, 0.8, 0.3])
    mc = np.maximum(m + s * rng.standard_normal((200_000, 4)), 0).mean(0)
    np.testing.assert_allclose(expected_relu_mean(m, s), mc, atol=5e-3)


def test_h5ad_roundtrip(tmp_path):
    a = simulate_perturbation(n_cells_per_group=5, n_genes=10, doses=[0.5, 2.0])
    write_h5ad(a, tmp_path / "sim.h5ad")
    import anndata as ad

    b = ad.read_h5ad(tmp_path / "sim.h5ad")
    np.testing.assert_allclose(ground_truth_mean(b, "type_1", "stimulated"), ground_truth_mean(a, "type_1", "stimulated"))
    np.testing.assert_allclose(
        ground_truth_mean(b, "type_1", "stimulated", dose=2.0), ground_truth_mean(a, "type_1", "stimulated", dose=2.0)
    )


def test_invalid_arguments():
    with pytest.raises(ValueError):
        simulate_perturbation(conditions=("a", "a"))
    with pytest.raises(ValueError):
        simulate_perturbation(de_fraction=1.5)
    with pytest.raises(ValueError):
        simulate_perturbation(doses=[-1.0])


# --------------------------------------------------------------------------------------------
# simulate_time_course
# --------------------------------------------------------------------------------------------
def test_time_course_structure_and_determinism():
    a = simulate_time_course(n_cells_per_step=10, n_genes=20, n_cell_types=2, time_points=(0, 0.5, 2, 6))
    assert a.shape == (2 * 4 * 10, 20)
    assert (a.X >= 0).all() and a.X.dtype == np.float32
    cond = a.obs["condition"]
    assert cond.cat.ordered and list(cond.cat.categories) == ["t0", "t1", "t2", "t3"]
    assert a.uns["condition_order"] == ["t0", "t1", "t2", "t3"]
    assert a.obs["time"].dtype == np.float64
    assert dict(zip(cond.astype(str), a.obs["time"])) == {"t0": 0.0, "t1": 0.5, "t2": 2.0, "t3": 6.0}
    assert a.obs_names.is_unique
    json.dumps(a.uns["ground_truth"])
    _assert_identical(a, simulate_time_course(n_cells_per_step=10, n_genes=20, time_points=(0, 0.5, 2, 6)))
    assert not np.allclose(a.X, simulate_time_course(n_cells_per_step=10, n_genes=20,
                                                     time_points=(0, 0.5, 2, 6), seed=1).X)
    c = simulate_time_course(n_cells_per_step=10, n_genes=20, counts=True)
    assert np.array_equal(c.X, np.round(c.X))
    with pytest.raises(ValueError):
        simulate_time_course(time_points=(0, 2, 1))


def test_time_course_follows_logistic_progress():
    n = 300
    a = simulate_time_course(n_cells_per_step=n, n_genes=30, n_cell_types=2, seed=7)
    gt = a.uns["ground_truth"]
    times = np.asarray(gt["time_points"])
    f = np.asarray(gt["progress"])
    np.testing.assert_allclose(f, logistic_progress(times, 0.0, 4.0, 2.0, 2.0))
    assert f[0] == 0 and f[-1] == 1 and np.all(np.diff(f) > 0)
    steps = np.diff(f)
    assert steps.max() > 2 * steps.min()  # non-linear: not a constant shift per step
    sd = np.asarray(gt["noise_sd"])
    for ct in ("type_0", "type_1"):
        mu, direction = np.asarray(gt["baseline"][ct]), np.asarray(gt["direction"][ct])
        for i, step in enumerate(gt["conditions"]):
            np.testing.assert_allclose(gt["profiles"][ct][step], mu + f[i] * direction)
            err = np.abs(_group_mean(a, ct, step) - ground_truth_mean(a, ct, step))
            assert np.all(err < 5 * sd / np.sqrt(n))
        # the empirical mean change on strongly-moving genes follows f(t)
        big = (np.abs(direction) > 0.5) & (mu + np.minimum(direction, 0) > 1.0)  # away from relu floor
        assert big.sum() >= 3
        emp = np.array([_group_mean(a, ct, s)[big] for s in gt["conditions"]])
        proj = (emp - emp[0]) @ direction[big] / (direction[big] @ direction[big])
        np.testing.assert_allclose(proj, f, atol=0.08)
