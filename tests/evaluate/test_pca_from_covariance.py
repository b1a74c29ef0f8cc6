"""The distribution metrics' PCA from a covariance equals fit_pca_space's randomised SVD on the cells."""

import numpy as np
import pytest

from virtualcell.metrics.distribution import fit_pca_space
from virtualcell.metrics.pca_from_covariance import pca_space_from_covariance


@pytest.mark.parametrize("dtype, atol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_the_covariance_gives_the_randomised_svd_of_the_cells(dtype, atol):
    rng = np.random.default_rng(0)
    x = (rng.gamma(0.5, 1.0, (800, 60)) * (rng.random((800, 60)) < 0.3)).astype(dtype)
    x[:, :4] += rng.normal(0, 3, (800, 1)).astype(dtype)            # one strong axis, then a flat noisy tail
    in_memory = fit_pca_space(x, 30, seed=3)
    centred = x.astype(np.float64) - x.astype(np.float64).mean(0)
    streamed = pca_space_from_covariance(x.mean(0, dtype=np.float64), centred.T @ centred, len(x), 30, seed=3,
                                         float32=dtype == np.float32)
    np.testing.assert_allclose(streamed.mean, in_memory.mean)
    np.testing.assert_allclose(streamed.axes, in_memory.axes, atol=atol)   # same axes, same signs
    exact = np.linalg.eigh(centred.T @ centred)[1][:, ::-1][:, :30]
    assert np.abs(np.abs(exact.T @ in_memory.axes).diagonal() - 1).max() > 1e-6   # and not the exact PCA (its tail)


def test_too_few_cells_is_an_error():
    with pytest.raises(ValueError, match=">= 2 cells"):
        pca_space_from_covariance(np.zeros(3), np.eye(3), 1)
