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
