"""Predictive quantiles (virtualcell.pipelines.intervals) and the coverage they give with few samples."""

import numpy as np
import pytest
import torch

from virtualcell.metrics import interval_coverage
from virtualcell.pipelines.intervals import predictive_quantiles


@pytest.mark.parametrize("n_samples", [1, 2, 7, 20, 101])
@pytest.mark.parametrize("dim", [0, 1])
def test_equal_numpy_weibull_quantiles(n_samples, dim):
    x = np.random.default_rng(n_samples).normal(size=(n_samples, 5, 3) if dim == 0 else (4, n_samples, 3))
    got = predictive_quantiles(torch.from_numpy(x), [0.05, 0.5, 0.95], dim=dim).numpy()
    expected = np.quantile(x, [0.05, 0.5, 0.95], axis=dim, method="weibull")
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_twenty_samples_cover_a_new_draw_at_the_nominal_level_where_linear_quantiles_fall_short():
    # 20 sampled population means per gene and the truth is one more draw from the same distribution:
    # over many genes the predictive 90% interval holds it ~90% of the time, numpy's linear one ~81%.
    rng = np.random.default_rng(0)
    n_genes = 20000
    samples = rng.normal(size=(20, 1, n_genes))
    real = rng.normal(size=(1, n_genes))
    weibull = interval_coverage(samples, real, level=0.9)["coverage"]
    linear = interval_coverage(samples, real, level=0.9, method="linear")["coverage"]
    assert abs(weibull - 0.90) < 0.015
    assert abs(linear - 19.05 / 21 + 1.95 / 21) < 0.015 and linear < weibull - 0.05


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="probs"):
        predictive_quantiles(torch.zeros(3, 2), [0.0, 0.5])
    with pytest.raises(ValueError, match="at least one sample"):
        predictive_quantiles(torch.zeros(0, 2), [0.5])


def test_interval_table_aligns_genes_by_name_and_marks_uncalibrated_ones():
    from virtualcell.metrics.conformal import Calibration
    from virtualcell.pipelines.intervals import add_conformal_columns, interval_table

    cal = Calibration(("a", "b"), np.array([1.0, 2.0]), {"all": {0.9: 0.5, 0.8: 0.25}})
    table = interval_table(np.array([1.0, 1.0, 1.0]), ["b", "a", "c"], cal, levels=(0.9,))
    np.testing.assert_allclose(table.loc[["b", "a"], "lo_90"], [0.0, 0.5])
    assert np.isnan(table.loc["c", "hi_90"]) and list(table.columns) == ["mean", "lo_90", "hi_90"]

    import anndata as ad
    import pandas as pd

    predicted = ad.AnnData(np.ones((3, 2), dtype=np.float32), var=pd.DataFrame(index=["a", "b"]))
    add_conformal_columns(predicted, {})                                   # uncalibrated: nothing added
    assert list(predicted.var.columns) == []
    add_conformal_columns(predicted, {"conformal": cal.to_dict()})
    assert list(predicted.var.columns) == ["conformal_lo_80", "conformal_hi_80", "conformal_lo_90", "conformal_hi_90"]
    np.testing.assert_allclose(predicted.var["conformal_hi_90"], [1.5, 2.0])
