"""Interval coverage of the predicted mean (virtualcell.metrics.calibration)."""

import numpy as np
import pytest
import torch

from virtualcell.metrics.calibration import (calibration_report, coverage_curve, interval_coverage, mean_interval,
                                              population_samples)


def _populations(n_samples=200, n_cells=50, n_genes=40, spread=0.3, seed=0):
    """Samples whose per-sample means scatter around 1.0 with sd ``spread`` (plus cell noise)."""
    rng = np.random.default_rng(seed)
    shift = rng.normal(0, spread, size=(n_samples, 1, n_genes))
    return 1.0 + shift + rng.normal(0, 1.0, size=(n_samples, n_cells, n_genes)) * 0.1


def test_mean_interval_is_the_spread_of_per_sample_means_not_of_cells():
    samples = _populations(spread=0.0)  # the means barely move, single cells do
    lower, upper, centre = mean_interval(samples, level=0.9)
    assert lower.shape == upper.shape == centre.shape == (40,)
    assert np.all(lower <= centre) and np.all(centre <= upper)
    cell_width = np.quantile(samples[:, 0], 0.95, axis=0) - np.quantile(samples[:, 0], 0.05, axis=0)
    assert (upper - lower).mean() < 0.2 * cell_width.mean()


def test_coverage_matches_the_nominal_level_when_truth_is_drawn_like_the_samples():
    rng = np.random.default_rng(1)
    samples = _populations(n_samples=400, n_genes=500, spread=0.3, seed=2)
    truth_means = 1.0 + rng.normal(0, 0.3, size=500)        # the truth is one more draw of the mean
    real = truth_means[None, :] + np.zeros((30, 500))
    result = interval_coverage(samples, real, level=0.9)
    assert 0.85 <= result["coverage"] <= 0.95
    assert result["n_genes"] == 500
    curve = coverage_curve(samples, real, levels=(0.5, 0.9))
    assert curve["0.5"] < curve["0.9"]
    assert 0.4 <= curve["0.5"] <= 0.6


def test_overconfident_intervals_have_low_coverage_and_the_subset_is_respected():
    samples = _populations(spread=0.01)
    real = np.full((10, 40), 2.0)
    real[:, :5] = 1.0
    assert interval_coverage(samples, real, level=0.9)["coverage"] <= 5 / 40
    subset = interval_coverage(samples, real, idx=np.arange(5), level=0.9)
    assert subset["coverage"] == 1.0 and subset["n_genes"] == 5
    mask = np.zeros(40, dtype=bool)
    mask[:5] = True
    assert interval_coverage(samples, real, idx=mask)["coverage"] == 1.0


def test_calibration_report_uses_deg_names():
    samples = _populations(n_genes=6)
    genes = [f"g{i}" for i in range(6)]
    real = np.ones((5, 6))
    report = calibration_report(samples, real, genes, ["g1", "g3"])
    assert report["n_genes"] == 2 and report["level"] == 0.9 and set(report["curve"]) == {"0.5", "0.8", "0.9", "0.95"}
    with pytest.raises(ValueError, match="not in genes"):
        calibration_report(samples, real, genes, ["nope"])


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="n_samples"):
        mean_interval(np.zeros((1, 3, 4)))
    with pytest.raises(ValueError, match=r"\[n_samples, cells, genes\]"):
        mean_interval(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="level"):
        mean_interval(np.zeros((2, 3, 4)), level=1.5)
    with pytest.raises(ValueError, match="real must be"):
        interval_coverage(np.zeros((2, 3, 4)), np.zeros((3, 5)))


def test_population_samples_keeps_every_decoded_sample():
    class FakePipeline:
        def predict_samples(self, adata, *, target, n_samples, seed, context_effect_scale):
            assert target == "stim" and context_effect_scale == 1.0
            decoded = torch.stack([torch.full((3, 2), float(seed + s)) for s in range(n_samples)])
            return decoded, decoded[..., :1]

    fake = FakePipeline()
    samples = population_samples(fake, None, target="stim", n_samples=4, seed=10)
    assert samples.shape == (4, 3, 2) and samples.dtype == np.float32
    np.testing.assert_array_equal(samples[:, 0, 0], [10, 11, 12, 13])
    with pytest.raises(ValueError, match="n_samples"):
        population_samples(fake, None, target="stim", n_samples=1)


def test_population_samples_with_a_real_stochastic_pipeline_is_seeded():
    import anndata as ad
    import pandas as pd

    from virtualcell.pipelines.perturbation import PerturbationPipeline

    g = torch.Generator().manual_seed(0)
    n, genes = 90, [f"gene_{i}" for i in range(12)]
    condition = np.array(["control", "stim"] * (n // 2))
    x = torch.rand(n, len(genes), generator=g).numpy() + (condition == "stim")[:, None] * 1.0
    adata = ad.AnnData(X=x.astype(np.float32), obs=pd.DataFrame({"condition": condition}, index=[f"c{i}" for i in range(n)]),
                       var=pd.DataFrame(index=genes))
    manipulator = {"name": "diffusion", "hidden": 16, "depth": 1, "cond_dim": 8, "max_epochs": 2, "patience": None,
                   "num_inference_steps": 4, "eta": 1.0, "sampling_progress": False}
    pipe = PerturbationPipeline(encoder="identity-encoder", manipulator=manipulator).fit(adata, progress=False)
    source = adata[adata.obs["condition"] == "control"]
    a = population_samples(pipe, source, target="stim", n_samples=3, seed=5)
    b = population_samples(pipe, source, target="stim", n_samples=3, seed=5)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, n // 2, len(genes)) and not np.allclose(a[0], a[1])
    assert a.min() >= 0                                                   # clamped like predict
    predicted = pipe.predict(source, target="stim", n_samples=3, seed=5)
    mean = predicted.layers["sample_mean"] if "sample_mean" in predicted.layers else predicted.X
    np.testing.assert_allclose(mean, a.mean(0), rtol=1e-6, atol=1e-6)    # the samples predict reduces
    assert 0.0 <= calibration_report(a, adata[adata.obs["condition"] == "stim"].X, genes, genes[:5])["coverage"] <= 1.0


def test_unit_coverage_counts_genes_inside_the_conformal_interval():
    from virtualcell.evaluate.conformal import unit_coverage
    from virtualcell.metrics.conformal import Calibration

    cal = Calibration(("a", "b", "c", "d"), np.ones(4), {"degs": {0.9: 1.0}, "all": {0.9: 0.5}})
    pred, true = np.zeros(4), np.array([0.2, 0.8, 2.0, 0.0])
    out = unit_coverage(cal, pred, true, np.array([0, 1, 2]), levels=(0.9,))
    assert out["conformal_coverage90"] == pytest.approx(2 / 3) and out["conformal_width90"] == 2.0
    assert out["conformal_coverage90_all"] == 0.5 and out["conformal_width90_all"] == 1.0


def test_benchmark_conformal_option_from_the_command_line(tmp_path):
    import json
    import subprocess
    import sys

    from virtualcell.datasets import simulate_perturbation

    data = simulate_perturbation(n_cells_per_group=25, n_genes=30, n_cell_types=4, seed=0)
    data.write_h5ad(tmp_path / "d.h5ad")
    command = [sys.executable, "-m", "virtualcell.cli", "benchmark", "oos", "--data", str(tmp_path / "d.h5ad"),
               "--out", str(tmp_path / "run"), "--encoder", "identity-encoder", "--manipulator", "mean-shift",
               "--no-baselines", "--no-plots", "--quiet", "--n-top", "10", "--conformal"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "run" / "results.json").read_text())
    assert report["conformal"]["levels"] == [0.8, 0.9, 0.95]
    rows = report["results"]["identity-encoder+mean-shift"]
    assert len(rows) == 4
    for row in rows.values():
        assert row["conformal_units"] == 3                              # the 3 training contexts of each unit
        assert 0.0 <= row["conformal_coverage90"] <= 1.0 and row["conformal_width95"] >= row["conformal_width90"]
        assert "conformal_pooled_coverage90" in row and "conformal_coverage90_all" in row
        assert 0.0 <= row["conformal_q10_coverage90"] <= 1.0 and "conformal_q90_width95" in row   # cell quantiles
