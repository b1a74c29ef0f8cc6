"""Issue 21 items 5, 6 and 13 at the pipeline: a forgotten context_key, cells already in the target, and
predicted cells that concatenate with real ones (the hostile items: tests/security/test_pipeline_inputs.py)."""

import warnings

import anndata as ad
import numpy as np
import pytest

import virtualcell as vc
from virtualcell import DataError
from virtualcell.datasets import simulate_perturbation
from virtualcell.pipelines.context_hint import MissingContextWarning, context_candidates


@pytest.fixture(scope="module")
def data():
    adata = simulate_perturbation(n_cells_per_group=30, n_genes=30, n_cell_types=3, seed=0)
    adata.obs["n_counts"] = np.arange(adata.n_obs, dtype=float)             # a QC column
    adata.obs["barcode"] = [f"AC{i:04d}" for i in range(adata.n_obs)]         # an identifier
    held = (adata.obs["cell_type"] == "type_0").to_numpy() & (adata.obs["condition"] == "stimulated").to_numpy()
    return adata, adata[~held].copy()


@pytest.fixture(scope="module")
def fitted(data):
    _, train = data
    return vc.PerturbationPipeline("pca", "latent-arithmetic").fit(train, context_key="cell_type", progress=False)


def _fit(train, **kwargs):
    return vc.PerturbationPipeline("identity-encoder", "mean-shift").fit(train, progress=False, **kwargs)


# -- item 5: a forgotten context_key ---------------------------------------------------------------------------

def test_fit_without_context_key_warns_naming_the_column(data):
    _, train = data
    with pytest.warns(MissingContextWarning, match=r"adata.obs\['cell_type'\].*cell_type='type_0' has no "
                                                   r"'stimulated' cells.*context_key='cell_type'.*--context-key"):
        _fit(train)


def test_no_warning_when_the_context_is_given_or_nothing_is_held_out(data):
    adata, train = data
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingContextWarning)
        _fit(train, context_key="cell_type")
        _fit(adata)                                          # every cell type in every condition


def test_nested_and_identifier_columns_are_not_contexts(data):
    _, train = data
    obs = train.obs.copy()
    obs["sample"] = obs["condition"].astype(str) + "_" + (np.arange(len(obs)) % 2).astype(str)   # nested in condition
    found = context_candidates(obs, obs["condition"].astype(str).to_numpy(), "control", exclude=["condition"])
    assert list(found) == ["cell_type"] and found["cell_type"] == [("type_0", "stimulated")]


# -- item 6: cells already in the target condition -------------------------------------------------------------

def test_cells_already_in_the_target_are_refused(data, fitted):
    adata, _ = data
    cells = adata[adata.obs["cell_type"] == "type_1"]          # both conditions, as with --cells cell_type=type_1
    with pytest.raises(DataError, match=r"30 of the 60 cells are already 'stimulated'.*adata.obs\['condition'\] "
                                        r"!= 'stimulated'"):
        fitted.predict(cells, target="stimulated")
    with pytest.raises(DataError, match="already 'stimulated'"):
        fitted.predict_samples(cells, target="stimulated")
    with pytest.raises(DataError, match="source and target are both 'stimulated'"):
        fitted.predict(cells, target="stimulated", source="stimulated")
    control = cells[cells.obs["condition"] == "control"]
    assert fitted.predict(control, target="stimulated").n_obs == 30


# -- item 13: predicted cells are new cells ----------------------------------------------------------------------

def test_predicted_cells_concatenate_with_real_cells(data, fitted):
    adata, _ = data
    control = adata[(adata.obs["cell_type"] == "type_0") & (adata.obs["condition"] == "control")]
    predicted = fitted.predict(control, target="stimulated")
    assert list(predicted.obs_names) == [f"{n}-pred-stimulated" for n in control.obs_names]
    assert set(predicted.obs.columns) == {"condition", "condition_source", "source_cell", "cell_type"}
    assert list(predicted.obs["condition"].cat.categories) == ["stimulated"]
    assert list(predicted.obs["cell_type"].cat.categories) == ["type_0"]
    both = ad.concat([adata, predicted])
    assert both.obs_names.is_unique and both.n_obs == adata.n_obs + control.n_obs
    assert (both.obs["condition"].astype(str) == "stimulated").sum() == (adata.obs["condition"] == "stimulated").sum() + 30
