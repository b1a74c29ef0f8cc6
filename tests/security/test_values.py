"""Hostile values at the AnnData edge: absurd magnitudes, float32 overflow, NaN, and counts posing as log data."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from virtualcell.data.checks import MAX_EXPRESSION, MAX_LOG_EXPRESSION, DataError, check_expression, looks_like_counts
from virtualcell.datasets import simulate_perturbation
from virtualcell.pipelines import PerturbationPipeline

KANG = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "kang_pbmc_scgen_valid.h5ad"


@pytest.mark.parametrize("sparse", [False, True])
def test_fit_refuses_one_absurd_value_naming_cell_and_gene(sim, sparse):
    """A single 1e30 used to zero gene_7's predictions silently."""
    bad = sim.copy()
    x = np.asarray(bad.X, dtype=np.float32).copy()
    x[5, 7] = 1e30
    bad.X = sp.csr_matrix(x) if sparse else x
    with pytest.raises(DataError, match=r"1e\+30 in cell 'cell_5'.*gene 'gene_7'"):
        PerturbationPipeline("pca", "latent-arithmetic").fit(bad, context_key="cell_type", progress=False)


def test_predict_refuses_float64_beyond_float32_naming_the_cell(sim, fitted):
    """A float64 1e39 became inf in float32 and a NaN row, with no error."""
    cells = sim[sim.obs["condition"] == "control"].copy()
    cells.X = np.asarray(cells.X, dtype=np.float64)
    cells.X[3, 0] = 1e39
    name = cells.obs_names[3]
    with pytest.raises(DataError, match=rf"cell '{name}'"):
        fitted.predict(cells, target="stimulated")


def test_predict_refuses_nan_naming_the_cell(sim, fitted):
    cells = sim[:10].copy()
    cells.X = np.asarray(cells.X).copy()
    cells.X[4, 2] = np.nan
    with pytest.raises(DataError, match=r"NaN or infinite.*cell 'cell_4'.*gene 'gene_2'"):
        fitted.predict(cells, target="stimulated")


def test_bound_is_float32_exact_integer_limit():
    assert MAX_EXPRESSION == 2.0**24
    check_expression(np.array([[0.0, MAX_EXPRESSION]]), expect="counts")        # the limit itself passes
    with pytest.raises(DataError, match="1 values above 16777216"):
        check_expression(np.array([[0.0, 2.0**24 + 2]]), expect="counts")
    with pytest.raises(DataError, match=r"row 1, column 0"):                    # without names: positions
        check_expression(np.array([[1.5, 2.5], [1e20, 0.5]]))


@pytest.mark.parametrize("mean", [0.1, 0.5, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("sparse", [False, True])
def test_poisson_counts_with_small_means_are_counts(mean, sparse):
    """Poisson counts with max <= 20 used to pass as log data."""
    counts = np.random.default_rng(int(mean * 10)).poisson(mean, (200, 50)).astype(np.float32)
    assert counts.max() <= 20
    x = sp.csr_matrix(counts) if sparse else counts
    assert looks_like_counts(x)
    with pytest.raises(DataError, match="looks like raw counts"):
        check_expression(x, expect="log")
    check_expression(x, expect="counts")


def test_log_data_is_not_counts(sim):
    assert not looks_like_counts(sim.X)
    counts = simulate_perturbation(n_cells_per_group=20, n_genes=30, counts=True, seed=1).X
    assert looks_like_counts(counts)
    normalised = np.log1p(counts / np.maximum(counts.sum(1, keepdims=True), 1) * 1e4)
    assert not looks_like_counts(normalised) and not looks_like_counts(sp.csr_matrix(normalised))
    assert not looks_like_counts(np.eye(20)), "a 0/1 matrix is ambiguous: not called counts"
    assert not looks_like_counts(np.zeros((5, 5)))


@pytest.mark.skipif(not KANG.exists(), reason=f"real data not found at {KANG}")
def test_real_log_normalised_kang_is_not_counts():
    kang = ad.read_h5ad(KANG)
    assert not looks_like_counts(kang.X)
    check_expression(kang.X, expect="log", obs_names=kang.obs_names, var_names=kang.var_names)


@pytest.mark.parametrize("sparse", [False, True])
def test_an_implausible_log_value_is_refused_naming_cell_and_gene(sim, sparse):
    """Issue 21 item 26: a 1e6 in log-normalised data passed (below 2**24, and not integer data)."""
    bad = sim.copy()
    x = np.asarray(bad.X, dtype=np.float32).copy()
    x[3, 4] = 1e6
    bad.X = sp.csr_matrix(x) if sparse else x
    with pytest.raises(DataError, match=r"should be log-normalised but holds 1 values above 30.*1e\+06 in cell "
                                        r"'cell_3'.*gene 'gene_4'.*sc.pp.log1p"):
        PerturbationPipeline("pca", "latent-arithmetic").fit(bad, context_key="cell_type", progress=False)
    check_expression(x, expect="any")                                        # only log data has the bound
    check_expression(np.array([[0.0, MAX_LOG_EXPRESSION]]), expect="log")   # the bound itself passes
