"""Split-conformal intervals of the predicted mean from inner folds (virtualcell.metrics.conformal,
virtualcell.selection.conformal; docs/uncertainty.md)."""

import json

import numpy as np
import pytest

import virtualcell as vc
from virtualcell.datasets import simulate_perturbation
from virtualcell.metrics.conformal import Calibration, conformal_calibration, finite_quantile, response_scale
from virtualcell.pipelines.intervals import attach_calibration, load_calibration, predict_interval
from virtualcell.selection.conformal import calibrate_pipeline, inner_residuals


def _units(n_units, n_genes=400, unit_sd=0.3, seed=0):
    """Units whose per-gene residual is scale_g * (unit effect + gene noise): exchangeable units."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.2, 2.0, n_genes)
    ctrl = rng.uniform(0, 2, (n_units, n_genes))
    response = 1.0 + scale * rng.normal(size=(n_units, n_genes))          # the real responses spread by scale
    true = ctrl + response
    error = scale * (unit_sd * rng.normal(size=(n_units, 1)) + rng.normal(size=(n_units, n_genes)))
    return true - error, true, ctrl


def test_finite_quantile_and_scale_floor():
    assert finite_quantile(np.arange(1, 11), 0.5) == 6                    # ceil(11 * 0.5) = 6th smallest
    assert finite_quantile(np.arange(1, 11), 0.95) == 10                  # capped at the largest
    scale = response_scale(np.array([[1.0, 0.0], [3.0, 0.0]]), floor=0.1)
    assert scale[1] > 0 and scale[0] == pytest.approx(np.sqrt(2 + (0.1 * np.sqrt(2) / 2) ** 2))


def test_new_units_are_covered_at_about_the_nominal_level():
    # calibrate on 12 units, test on 200 fresh units drawn the same way: per-unit coverage of the
    # 90% interval centres on 0.9 (the unit-level quantile is the median of units, slightly conservative)
    pred, true, ctrl = _units(212, seed=1)
    cal = conformal_calibration(pred[:12], true[:12], ctrl[:12], genes=[f"g{i}" for i in range(400)])
    coverage = []
    for k in range(12, 212):
        lo, hi = cal.interval(pred[k], 0.9, "all")
        coverage.append(np.mean((true[k] >= lo) & (true[k] <= hi)))
    assert 0.86 <= np.median(coverage) <= 0.95
    assert cal.multiplier(0.8) < cal.multiplier(0.9) < cal.multiplier(0.95)
    pooled = conformal_calibration(pred[:12], true[:12], ctrl[:12], genes=[f"g{i}" for i in range(400)],
                                   method="pooled")
    assert abs(pooled.multiplier(0.9) - cal.multiplier(0.9)) < 0.3 * cal.multiplier(0.9)


def test_the_degs_scope_calibrates_on_each_units_own_degs():
    pred, true, ctrl = _units(8, seed=2)
    genes = [f"g{i}" for i in range(400)]
    big = [np.argsort(-np.abs(true[k] - ctrl[k]))[:50] for k in range(8)]
    pred[:, :] = pred + 0                                                   # same predictions
    for k, idx in enumerate(big):                                           # larger errors on the DEGs
        pred[k, idx] += 3.0 * (true[k, idx] - pred[k, idx])
    cal = conformal_calibration(pred, true, ctrl, genes=genes, degs=big)
    assert cal.scopes == ("degs", "all") and cal.default_scope() == "degs"
    assert cal.multiplier(0.9, "degs") > cal.multiplier(0.9, "all")
    names = conformal_calibration(pred, true, ctrl, genes=genes, degs=[[genes[i] for i in idx] for idx in big])
    assert names.multiplier(0.9, "degs") == cal.multiplier(0.9, "degs")


def test_calibration_round_trips_through_json_and_refuses_damage():
    pred, true, ctrl = _units(5, n_genes=20, seed=3)
    cal = conformal_calibration(pred, true, ctrl, genes=[f"g{i}" for i in range(20)], levels=(0.5, 0.9))
    back = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    np.testing.assert_allclose(back.scale, cal.scale)
    assert back.quantiles == cal.quantiles and back.levels == (0.5, 0.9)
    with pytest.raises(ValueError, match="No conformal quantile for level 0.95.*levels=\\(..., 0.95\\)"):
        back.interval(pred[0], 0.95)
    with pytest.raises(ValueError, match="one value per calibrated gene"):
        back.interval(pred[0, :5])
    bad = cal.to_dict() | {"scale": [-1.0] * 20}
    with pytest.raises(ValueError, match="positive finite"):
        Calibration.from_dict(bad)
    with pytest.raises(ValueError, match="expected format"):
        Calibration.from_dict({"genes": []})


def test_bad_inputs_name_the_problem():
    pred, true, ctrl = _units(3, n_genes=10)
    genes = [f"g{i}" for i in range(10)]
    with pytest.raises(ValueError, match=r"must all be \[units, 10\]"):
        conformal_calibration(pred[:, :5], true, ctrl, genes=genes)
    with pytest.raises(ValueError, match="at least 2 out-of-fold units"):
        conformal_calibration(pred[:1], true[:1], ctrl[:1], genes=genes)
    with pytest.raises(ValueError, match="method must be one of"):
        conformal_calibration(pred, true, ctrl, genes=genes, method="nope")
    with pytest.raises(ValueError, match="not in genes"):
        conformal_calibration(pred, true, ctrl, genes=genes, degs=[["x"]] * 3)


@pytest.fixture(scope="module")
def adata():
    return simulate_perturbation(n_cells_per_group=30, n_genes=40, n_cell_types=4, seed=0)


def _fit(train):
    return vc.PerturbationPipeline(encoder="identity-encoder", manipulator="mean-shift").fit(
        train, context_key="cell_type", progress=False)


def test_calibrate_pipeline_runs_one_fit_per_inner_fold_and_travels_with_the_saved_pipeline(adata, tmp_path):
    fits = []
    residuals = inner_residuals(lambda train: fits.append(train.n_obs) or _fit(train), adata, context_key="cell_type",
                                n_top=10)
    assert len(fits) == 4 and residuals.units == [f"type_{i}/stimulated" for i in range(4)]
    assert residuals.pred.shape == (4, 40) and all(d.size == 10 for d in residuals.degs)
    cal = calibrate_pipeline(_fit, adata, context_key="cell_type", n_top=10)
    assert cal.n_units == 4 and cal.genes == tuple(adata.var_names)
    pipe = attach_calibration(_fit(adata), cal)
    pipe.save(tmp_path / "p")
    loaded = vc.PerturbationPipeline.load(tmp_path / "p")
    assert load_calibration(loaded).quantiles == cal.quantiles
    control = adata[adata.obs["condition"] == "control"]
    table = predict_interval(loaded, control, target="stimulated")
    assert list(table.columns) == ["mean", "lo_80", "hi_80", "lo_90", "hi_90", "lo_95", "hi_95"]
    assert (table["lo_95"] <= table["lo_90"]).all() and (table["hi_90"] <= table["hi_95"]).all()
    predicted = loaded.predict(control, target="stimulated")
    np.testing.assert_allclose(predicted.var["conformal_lo_90"], table["lo_90"], rtol=1e-5)
    assert "conformal_lo_90" not in _fit(adata).predict(control, target="stimulated").var   # uncalibrated: none


def test_an_uncalibrated_pipeline_says_how_to_calibrate(adata):
    with pytest.raises(ValueError, match="no conformal calibration.*virtualcell.select.*attach_calibration"):
        predict_interval(_fit(adata), adata, target="stimulated")


def test_select_calibrates_its_winner_from_the_inner_cv_without_refitting(adata):
    # one candidate, no ensemble or spread: select's inner CV makes the out-of-fold predictions that a
    # separate calibrate_pipeline run makes, so both calibrations agree (and select fitted nothing more)
    pipe = vc.select(adata, candidates=["mean-shift"], context_key="cell_type", n_top=10, ensemble=False,
                     spread=False, progress=False)
    cal = load_calibration(pipe)
    assert cal.n_units == 4 and cal.n_top == 10
    separate = calibrate_pipeline(_fit, adata, context_key="cell_type", n_top=10)
    np.testing.assert_allclose(cal.scale, separate.scale, rtol=1e-5)
    for scope in ("degs", "all"):
        for level in (0.8, 0.9, 0.95):
            assert cal.multiplier(level, scope) == pytest.approx(separate.multiplier(level, scope), rel=1e-4)


def test_a_spread_or_ensemble_winner_is_calibrated_from_its_kept_out_of_fold_predictions():
    from types import SimpleNamespace

    from virtualcell.selection.conformal import attach_selected_calibration

    rng = np.random.default_rng(0)
    genes = [f"g{i}" for i in range(12)]
    truths = {f"u{k}": SimpleNamespace(stim=rng.normal(1, 1, (20, 12)), ctrl=rng.normal(0, 1, (20, 12)),
                                       genes=genes, degs=genes[:5]) for k in range(3)}
    folds = [SimpleNamespace(units=[SimpleNamespace(name=u)]) for u in truths]
    cv = SimpleNamespace(preds={"ensemble": {u: rng.normal(1, 1, (15, 12)) for u in truths}}, truths=truths)
    pipe = SimpleNamespace(metadata={})
    cal = attach_selected_calibration(pipe, cv, folds, "ensemble+spread", n_top=5)
    assert cal.n_units == 3 and pipe.metadata["conformal"]["n_units"] == 3
    assert attach_selected_calibration(SimpleNamespace(metadata={}), cv, folds, "mean-shift", n_top=5) is None
