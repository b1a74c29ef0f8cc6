"""Issue 22: the selection rule (scale-aware loss, one-SE rule, no float ties), the budget, and ensembles that
keep their cells' spread (virtualcell.selection)."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

import virtualcell as vc
from virtualcell.datasets import simulate_perturbation
from virtualcell.pipelines import EnsemblePipeline
from virtualcell.pipelines.ensemble import stack_cells
from virtualcell.selection import DEFAULT_CANDIDATES, parse_candidate, select_pipeline
from virtualcell.selection.candidates import capped
from virtualcell.selection.entries import fit_entry
from virtualcell.selection.ranking import choose_entry, rank_entries, unit_losses
from virtualcell.selection.spread import spread_entries

METRICS = {"pearson_delta": +1, "edistance_ratio": -1, "r2_mean_top100": +1}


def _scores(pd_, ratio, r2, control=1.0):
    return {"pearson_delta": pd_, "edistance_ratio": ratio, "r2_mean_top100": r2, "edistance_control": control}


def test_float_rounding_is_not_a_preference():
    # the mean ranks of 'a' and 'b' differ by ~4e-16 (float rounding): the earlier entry wins, under every rule
    losses = pd.DataFrame({"a": [0.3, 0.1], "b": [0.3 - 4e-16, 0.1]}, index=["u1", "u2"])
    ranks = pd.DataFrame({"a": [1.5, 1.5], "b": [1.5 - 4e-16, 1.5]}, index=["u1", "u2"])
    for rule in ("min", "one-se", "rank"):
        assert choose_entry(losses, ["a", "b"], rule, ranks=ranks)[0] == "a"


def test_the_score_sees_effect_sizes_where_mean_ranks_do_not():
    # 'a' is 0.001 better on pearson_delta and R² on every unit, 'b' 0.3 better on the energy distance
    scores = {"a": {u: _scores(0.901, 0.6, 0.901) for u in "xyz"}, "b": {u: _scores(0.9, 0.3, 0.9) for u in "xyz"}}
    ranks, losses = rank_entries(scores, METRICS), unit_losses(scores, METRICS)
    assert choose_entry(losses, ["a", "b"], "rank", ranks=ranks)[0] == "a"     # the old rule: a full rank per 0.001
    assert choose_entry(losses, ["a", "b"], "min")[0] == "b"
    assert choose_entry(losses, ["a", "b"], "one-se")[0] == "b"
    np.testing.assert_allclose(losses["b"], (0.1 + 0.3 + 0.1) / 3)


def test_a_ratio_without_a_measurable_effect_is_left_out_of_the_loss():
    scores = {"a": {"u": _scores(0.5, 9.0, 0.5, control=-0.01)}}
    assert unit_losses(scores, METRICS).loc["u", "a"] == pytest.approx(0.5)


def test_the_one_se_rule_prefers_the_simpler_entry_within_noise_only():
    rng = np.random.default_rng(0)
    noise = rng.normal(scale=0.05, size=6)
    folds = {f"u{i}": f"f{i}" for i in range(6)}
    close = pd.DataFrame({"simple": 0.40 + noise, "complex": 0.40 + noise[::-1] - 0.005}, index=list(folds))
    winner, se = choose_entry(close, ["simple", "complex"], "one-se", folds)
    assert winner == "simple" and se["simple"] > 0.005
    assert choose_entry(close, ["simple", "complex"], "min", folds)[0] == "complex"
    far = pd.DataFrame({"simple": 0.40 + noise, "complex": 0.30 + noise}, index=list(folds))
    assert choose_entry(far, ["simple", "complex"], "one-se", folds)[0] == "complex"
    with pytest.raises(ValueError, match="Unknown selection rule"):
        choose_entry(far, ["simple"], "best")


def test_the_stacked_ensemble_keeps_its_base_members_cell_to_cell_spread():
    rng = np.random.default_rng(1)
    a = 5 + rng.normal(size=(2000, 3))
    b = 6 + rng.normal(size=(2000, 3))                  # independent cells: averaging them shrinks the sd by ~1/sqrt(2)
    averaged = stack_cells([a, b], [0.5, 0.5], None)
    stacked = stack_cells([a, b], [0.5, 0.5], 0)
    np.testing.assert_allclose(stacked.mean(0), 0.5 * a.mean(0) + 0.5 * b.mean(0))
    np.testing.assert_allclose(stacked.std(0), a.std(0))
    assert (averaged.std(0) < 0.8 * a.std(0)).all()


@pytest.fixture(scope="module")
def adata():
    return simulate_perturbation(n_cells_per_group=30, n_genes=40, n_cell_types=4, seed=0)


def test_a_mean_stacked_ensemble_saves_its_rule_and_old_ensembles_keep_averaging(adata, tmp_path):
    train = adata[~((adata.obs["cell_type"] == "type_0") & (adata.obs["condition"] == "stimulated"))].copy()
    members = [vc.PerturbationPipeline(encoder=e, manipulator=m).fit(train, context_key="cell_type", progress=False)
               for e, m in (("identity-encoder", "mean-shift"), ("pca", "latent-arithmetic"))]
    control = adata[(adata.obs["cell_type"] == "type_0") & (adata.obs["condition"] == "control")]
    ens = EnsemblePipeline(members, [0.3, 0.7], ["ms", "pca"], combine="mean", base=1)
    out = ens.predict(control, target="stimulated", n_samples=3)
    preds = [m.predict(control, target="stimulated").X for m in members]
    np.testing.assert_allclose(out.X, stack_cells(preds, [0.3, 0.7], 1), rtol=1e-5, atol=1e-5)
    ens.save(tmp_path / "ens")
    spec = json.loads((tmp_path / "ens" / "pipeline.json").read_text())
    assert spec["combine"] == "mean" and spec["base"] == 1
    loaded = EnsemblePipeline.load(tmp_path / "ens")
    assert (loaded.combine, loaded.base) == ("mean", 1)
    np.testing.assert_allclose(loaded.predict(control, target="stimulated").X, out.X, rtol=1e-6)
    old = EnsemblePipeline(members, [0.3, 0.7], ["ms", "pca"])          # what every earlier ensemble is
    old.save(tmp_path / "old")
    assert "combine" not in json.loads((tmp_path / "old" / "pipeline.json").read_text())
    np.testing.assert_allclose(EnsemblePipeline.load(tmp_path / "old").predict(control, target="stimulated").X,
                               0.3 * preds[0] + 0.7 * preds[1], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="needs base"):
        EnsemblePipeline(members, [0.3, 0.7], ["ms", "pca"], combine="mean")


def test_spread_factors_are_learnt_from_units_with_an_effect_only():
    rng = np.random.default_rng(2)
    preds = {u: rng.normal(size=(80, 4)) for u in "abcd"}
    truths = {u: 2 * rng.normal(size=(80, 4)) for u in "abcd"}
    wild = {**truths, "d": 50 * truths["d"]}
    folds = [["a"], ["b"], ["c"], ["d"]]
    view = {"m": lambda fold, unit: preds[unit]}
    _, kept = spread_entries(view, wild, folds, usable={"a", "b", "c"})
    _, clean = spread_entries(view, truths, folds, usable={"a", "b", "c"})
    np.testing.assert_array_equal(kept["m"], clean["m"])                 # 'd' (no effect) never counts
    _, everything = spread_entries(view, wild, folds)
    assert not np.allclose(everything["m"], clean["m"])


def test_the_default_budget_is_the_final_fits_and_quick_mode_says_so(adata):
    vae = parse_candidate(DEFAULT_CANDIDATES[-1])
    assert "max_epochs" not in vae.encoder                               # the VAE a user fits, not a capped one
    assert capped(vae, 15).encoder["max_epochs"] == 15 and capped(vae, None) is vae
    assert capped(parse_candidate("vae(max_epochs=5)+latent-arithmetic"), 15).encoder["max_epochs"] == 5
    cheap = ["mean-shift", "pca(n_components=8)+latent-arithmetic"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        full = select_pipeline(adata, candidates=cheap, context_key="cell_type", n_top=20, progress=False)
    assert full.report["budget"] == "full" and set(full.table["budget"]) == {"full"}
    with pytest.warns(UserWarning, match="may not transfer"):
        quick = select_pipeline(adata, candidates=cheap, context_key="cell_type", n_top=20, quick=True,
                                spread=False, progress=False)
    assert quick.report["budget"].startswith("quick(max_cells=200, max_epochs=15")
    report = full.report
    winner = report["winner"]
    row = {r["entry"]: r for r in report["table"]}
    assert row[winner]["score"] <= min(r["score"] for r in report["table"]) + row[winner]["score_se"] + 1e-9
    assert len(row[winner]["fold_scores"]) == 4 and report["rule"] == "one-se"


def test_select_fits_a_mean_stacked_ensemble(adata):
    cheap = ["mean-shift", "pca(n_components=8)+latent-arithmetic"]
    chosen = select_pipeline(adata, candidates=cheap, context_key="cell_type", n_top=20, spread=False,
                             progress=False)
    assert chosen.report["ensemble_base"] in cheap
    assert set(chosen.report["ensemble_base_per_fold"]) == {"type_0", "type_1", "type_2", "type_3"}
    train = adata[adata.obs["cell_type"] != "type_0"].copy()
    pipe = fit_entry(train, chosen.candidates, "ensemble", chosen.combined, chosen.genes, condition_key="condition",
                     control="control", context_key="cell_type", preprocess=None, layer=None, seed=0, progress=False)
    assert isinstance(pipe, EnsemblePipeline) and pipe.combine == "mean"
    assert pipe.labels[pipe.base] == chosen.report["ensemble_base"]
