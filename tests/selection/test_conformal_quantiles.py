"""Split-conformal intervals of per-gene cell quantiles from inner folds (virtualcell.metrics.conformal
``cell_quantiles``, virtualcell.selection.conformal, ``predict_interval(..., quantiles=...)``)."""

import json

import numpy as np
import pytest

import virtualcell as vc
from virtualcell.datasets import simulate_perturbation
from virtualcell.metrics.conformal import Calibration, population_quantiles
from virtualcell.pipelines.intervals import attach_calibration, load_calibration, predict_interval
from virtualcell.selection.conformal import calibrate_pipeline, cv_residuals


def _population(rng, n_units, n_genes=300, cells=200):
    """Units of cells N(mu_kg, sd_kg); predictions with a unit- and gene-level error in location and spread."""
    units = []
    for _ in range(n_units):
        mu, sd = rng.uniform(0, 3, n_genes), rng.uniform(0.3, 1.5, n_genes)
        response = rng.normal(1.0, 0.5, n_genes)
        ctrl = mu + sd * rng.normal(size=(cells, n_genes))
        stim = mu + response + sd * rng.normal(size=(cells, n_genes))
        shift = response + 0.3 * rng.normal() + 0.3 * rng.normal(size=n_genes)
        pred = mu + shift + sd * (1 + 0.3 * rng.normal(size=n_genes)) * rng.normal(size=(cells, n_genes))
        units.append((pred, stim, ctrl))
    return units


def test_fresh_units_real_quantiles_are_covered_at_about_the_nominal_level():
    # calibrate on 12 units, test on 100 fresh ones: the per-unit coverage (over genes) of the real cells'
    # 10% / 90% quantile by the 90% interval centres on 0.9
    rng = np.random.default_rng(0)
    units = _population(rng, 112)
    genes = [f"g{i}" for i in range(300)]
    truths = {f"u{k}": type("T", (), {"stim": s, "ctrl": c, "genes": genes, "degs": genes[:30]})
              for k, (_, s, c) in enumerate(units)}
    preds = {f"u{k}": p for k, (p, _, _) in enumerate(units)}
    residuals = cv_residuals(preds, truths, [f"u{k}" for k in range(12)], n_top=30, cell_quantiles=(0.1, 0.9))
    cal = residuals.calibration()
    assert sorted(cal.cell_quantiles) == [0.1, 0.9]
    for i, p in enumerate((0.1, 0.9)):
        q = cal.cell_quantile(p)
        assert q.multiplier(0.8, "all") < q.multiplier(0.9, "all") < q.multiplier(0.95, "all")
        coverage = []
        for pred, stim, _ in units[12:]:
            lo, hi = q.interval(population_quantiles(pred, (p,))[0], 0.9, "all")
            real = population_quantiles(stim, (p,))[0]
            coverage.append(np.mean((real >= lo) & (real <= hi)))
        assert 0.85 <= np.median(coverage) <= 0.95, (p, np.median(coverage))
    with pytest.raises(ValueError, match=r"0.5 quantile.*\[0.1, 0.9\].*cell_quantiles=\(..., 0.5\)"):
        cal.cell_quantile(0.5)


def test_held_out_cell_types_real_quantiles_are_covered_on_a_simulation():
    # calibrate mean-shift from the inner folds of 5 simulated types only, then score 5 other types' real
    # per-gene 10% / 90% quantiles (known: their cells), none of them seen by the fit or the calibration
    adata = simulate_perturbation(n_cells_per_group=50, n_genes=60, n_cell_types=10, seed=1)
    seen = adata.obs["cell_type"].isin([f"type_{i}" for i in range(5)]).to_numpy()

    def fit(train):
        return vc.PerturbationPipeline(encoder="identity-encoder", manipulator="mean-shift").fit(
            train, context_key="cell_type", progress=False)

    train = adata[seen].copy()
    pipe = attach_calibration(fit(train), calibrate_pipeline(fit, train, context_key="cell_type", n_top=15))
    coverage = {0.8: [], 0.9: [], 0.95: []}
    for held in [f"type_{i}" for i in range(5, 10)]:
        cells = adata[adata.obs["cell_type"] == held]
        table = predict_interval(pipe, cells[cells.obs["condition"] == "control"], target="stimulated",
                                 quantiles=(0.1, 0.9), scope="all")
        real = population_quantiles(cells[cells.obs["condition"] == "stimulated"].X, (0.1, 0.9))
        for level, values in coverage.items():
            tag = f"{level * 100:g}"
            values += [np.mean((real[i] >= table[f"q{p}_lo_{tag}"]) & (real[i] <= table[f"q{p}_hi_{tag}"]))
                       for i, p in enumerate((10, 90))]
    medians = {level: float(np.median(v)) for level, v in coverage.items()}
    assert 0.8 <= medians[0.9] <= 0.97 and medians[0.8] <= medians[0.9] <= medians[0.95], medians


@pytest.fixture(scope="module")
def selected():
    adata = simulate_perturbation(n_cells_per_group=30, n_genes=40, n_cell_types=4, seed=0)
    pipe = vc.select(adata, candidates=["mean-shift"], context_key="cell_type", n_top=10, ensemble=False,
                     spread=True, rule="min", progress=False)
    return adata, pipe


def test_select_calibrates_cell_quantiles_that_survive_a_save_and_load(selected, tmp_path):
    adata, pipe = selected
    cal = load_calibration(pipe)
    assert sorted(cal.cell_quantiles) == [0.1, 0.9] and cal.cell_quantile(0.9).n_units == 4
    control = adata[adata.obs["condition"] == "control"]
    table = predict_interval(pipe, control, target="stimulated", quantiles=(0.1, 0.9))
    assert {"q10", "q10_lo_90", "q10_hi_90", "q90_lo_95", "q90_hi_95"} <= set(table.columns)
    assert (table["q10_lo_90"] <= table["q10"]).all() and (table["q90"] <= table["q90_hi_90"]).all()
    np.testing.assert_allclose(table["q90"], np.quantile(pipe.predict(control, target="stimulated").X, 0.9, 0),
                               rtol=1e-5)
    pipe.save(tmp_path / "p")
    loaded = vc.load_pipeline(tmp_path / "p")
    back = load_calibration(loaded)
    assert back.cell_quantile(0.1).quantiles == cal.cell_quantile(0.1).quantiles
    np.testing.assert_allclose(back.cell_quantile(0.9).scale, cal.cell_quantile(0.9).scale)
    again = predict_interval(loaded, control, target="stimulated", quantiles=(0.1, 0.9))
    np.testing.assert_allclose(again.to_numpy(), table.to_numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match="0.25 quantile"):
        predict_interval(loaded, control, target="stimulated", quantiles=(0.25,))


def test_a_tampered_cell_quantile_calibration_is_refused(selected, tmp_path):
    from virtualcell.registry.errors import TamperedArtifactError

    _, pipe = selected
    data = load_calibration(pipe).to_dict()
    broken = json.loads(json.dumps(data))
    broken["cell_quantiles"]["0.9"]["scale"][0] = -1.0
    with pytest.raises(ValueError, match="positive finite"):
        Calibration.from_dict(broken)
    broken = json.loads(json.dumps(data))
    broken["cell_quantiles"]["1.5"] = broken["cell_quantiles"].pop("0.9")
    with pytest.raises(ValueError, match="cell_quantiles must be keyed by p in"):
        Calibration.from_dict(broken)
    pipe.save(tmp_path / "p")
    record = tmp_path / "p" / "pipeline.json"
    spec = json.loads(record.read_text())
    spec["metadata"]["conformal"]["cell_quantiles"]["0.1"]["quantiles"]["all"]["0.9"] *= 0.5   # narrower, quietly
    record.write_text(json.dumps(spec))
    with pytest.raises(TamperedArtifactError):
        vc.load_pipeline(tmp_path / "p")
