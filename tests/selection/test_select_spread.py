"""Spread calibration learnt by inner cross-validation (virtualcell.selection.spread)."""

import json

import numpy as np
import pytest

import virtualcell as vc
from virtualcell.datasets import simulate_perturbation
from virtualcell.pipelines import EnsemblePipeline
from virtualcell.selection import select_pipeline
from virtualcell.selection.spread import MAX_FACTOR, apply_spread, spread_entries, spread_factors


def test_factors_are_the_median_ratio_of_real_to_predicted_spread():
    rng = np.random.default_rng(0)
    preds, truths = [], []
    for scale in (1.8, 2.0, 2.2):                        # gene 0: real spread 2x the predicted one
        pred = rng.normal(size=(4000, 4))
        pred[:, 2] = 1.0                                 # gene 2: constant prediction, no usable ratio
        truth = rng.normal(size=(4000, 4))
        truth[:, 0] *= scale
        truth[:, 3] *= 100.0                             # gene 3: beyond the bound
        preds.append(pred)
        truths.append(truth)
    k = spread_factors(preds, truths)
    np.testing.assert_allclose(k[:2], [2.0, 1.0], atol=0.05)
    assert k[2] == 1.0 and k[3] == MAX_FACTOR


def test_applying_factors_keeps_the_mean_and_non_negative_values():
    rng = np.random.default_rng(1)
    signed = rng.normal(size=(500, 3))
    out = apply_spread(signed, np.array([2.0, 1.0, 0.5]))
    np.testing.assert_allclose(out.mean(0), signed.mean(0), atol=1e-12)
    np.testing.assert_allclose(out.std(0) / signed.std(0), [2.0, 1.0, 0.5], rtol=1e-9)
    counts = np.log1p(rng.poisson(1.0, size=(500, 3)).astype(float))
    wide = apply_spread(counts, np.array([3.0, 3.0, 3.0]))
    assert wide.min() >= 0
    np.testing.assert_allclose(wide.mean(0), counts.mean(0), rtol=1e-9)
    assert (wide.std(0) > 1.1 * counts.std(0)).all()   # the zeros (37%) stay at 0: less than 3x wider
    with pytest.raises(ValueError, match="one value per gene"):
        apply_spread(counts, np.ones(2))


def test_a_fold_is_calibrated_without_its_own_truth():
    rng = np.random.default_rng(2)
    preds = {u: rng.normal(size=(50, 5)) for u in "abcd"}
    truths = {u: 2 * rng.normal(size=(60, 5)) for u in "abcd"}
    folds = [["a"], ["b"], ["c", "d"]]
    calibrated, final = spread_entries({"m": lambda fold, unit: preds[unit]}, truths, folds)
    changed = {**truths, "a": 10 * truths["a"]}
    again, final_again = spread_entries({"m": lambda fold, unit: preds[unit]}, changed, folds)
    np.testing.assert_array_equal(again["m+spread"]["a"], calibrated["m+spread"]["a"])   # own truth unused
    assert not np.allclose(again["m+spread"]["b"], calibrated["m+spread"]["b"])           # others' truth used
    assert not np.allclose(final_again["m"], final["m"])


@pytest.fixture(scope="module")
def adata():
    return simulate_perturbation(n_cells_per_group=30, n_genes=40, n_cell_types=4, seed=0)


def test_an_ensemble_with_spread_saves_its_factors_under_the_hash(adata, tmp_path):
    train = adata[~((adata.obs["cell_type"] == "type_0") & (adata.obs["condition"] == "stimulated"))].copy()
    member = vc.PerturbationPipeline(encoder="identity-encoder", manipulator="mean-shift").fit(
        train, context_key="cell_type", progress=False)
    genes = list(member.decoder.output_features)
    wide = EnsemblePipeline([member], [1.0], ["mean-shift"], spread={g: 2.0 for g in genes})
    control = adata[(adata.obs["cell_type"] == "type_0") & (adata.obs["condition"] == "control")]
    plain = member.predict(control, target="stimulated").X
    out = wide.predict(control, target="stimulated", n_samples=3)
    np.testing.assert_allclose(out.X.mean(0), plain.mean(0), rtol=1e-4, atol=1e-5)
    assert out.X.std(0).sum() > 1.3 * plain.std(0).sum()
    wide.save(tmp_path / "wide")
    spec = json.loads((tmp_path / "wide" / "pipeline.json").read_text())
    assert spec["format_version"] == 2 and spec["spread"][genes[0]] == 2.0
    np.testing.assert_allclose(EnsemblePipeline.load(tmp_path / "wide").predict(control, target="stimulated").X,
                               out.X, rtol=1e-6)
    spec["spread"][genes[0]] = 3.0
    (tmp_path / "wide" / "pipeline.json").write_text(json.dumps(spec))
    with pytest.raises(Exception, match="hash mismatch"):
        EnsemblePipeline.load(tmp_path / "wide")
    with pytest.raises(ValueError, match="finite and > 0"):
        EnsemblePipeline([member], [1.0], ["m"], spread={genes[0]: -1.0})


def test_select_scores_spread_entries_and_can_leave_them_out(adata):
    cheap = ["mean-shift", "pca(n_components=8)+latent-arithmetic"]
    chosen = select_pipeline(adata, candidates=cheap, context_key="cell_type", n_top=20, progress=False)
    entries = set(chosen.table["entry"])
    assert {f"{c}+spread" for c in [*cheap, "ensemble"]} <= entries
    summary = chosen.report["spread"]
    assert set(summary["factors"]) == {*cheap, "ensemble"}
    assert summary["used"] == chosen.report["winner"].endswith("+spread")
    plain = select_pipeline(adata, candidates=cheap, context_key="cell_type", n_top=20, spread=False, progress=False)
    assert not any(e.endswith("+spread") for e in plain.table["entry"]) and plain.report["spread"] is None
