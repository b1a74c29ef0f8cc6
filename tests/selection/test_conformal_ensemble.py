"""Every kind of pipeline adds its conformal columns in ``predict`` (virtualcell.pipelines.intervals):
``select``'s ensemble / ``+spread`` winners as its single pipelines do (issue 22 item 4)."""

import numpy as np
import pytest

import virtualcell as vc
from virtualcell.datasets import simulate_perturbation
from virtualcell.pipelines.ensemble import EnsemblePipeline
from virtualcell.pipelines.intervals import load_calibration, predict_interval

COLUMNS = ["lo_80", "hi_80", "lo_90", "hi_90", "lo_95", "hi_95"]


@pytest.fixture(scope="module")
def adata():
    return simulate_perturbation(n_cells_per_group=30, n_genes=40, n_cell_types=4, seed=0)


def _same_columns(predicted, table):
    for column in COLUMNS:
        np.testing.assert_allclose(predicted.var[f"conformal_{column}"].to_numpy(), table[column].to_numpy(),
                                   rtol=1e-5, atol=1e-6)


def test_a_selected_ensemble_predicts_with_its_conformal_columns_after_a_save_too(adata, tmp_path):
    # rule "min" with spread on one candidate chooses mean-shift+spread on this simulation: a one-member
    # EnsemblePipeline carrying select's calibration (before the fix its predict had no conformal columns)
    pipe = vc.select(adata, candidates=["mean-shift"], context_key="cell_type", n_top=10, ensemble=False,
                     spread=True, rule="min", progress=False)
    assert isinstance(pipe, EnsemblePipeline) and pipe.metadata["selection"]["winner"] == "mean-shift+spread"
    control = adata[adata.obs["condition"] == "control"]
    _same_columns(pipe.predict(control, target="stimulated"), predict_interval(pipe, control, target="stimulated"))
    pipe.save(tmp_path / "ensemble")
    loaded = vc.load_pipeline(tmp_path / "ensemble")
    assert load_calibration(loaded).quantiles == load_calibration(pipe).quantiles
    predicted = loaded.predict(control, target="stimulated", n_samples=3)
    _same_columns(predicted, predict_interval(loaded, control, target="stimulated", n_samples=3))


def test_an_ensemble_drops_its_members_calibration_and_an_uncalibrated_one_adds_none(adata):
    member = vc.select(adata, candidates=["mean-shift"], context_key="cell_type", n_top=10, ensemble=False,
                       spread=False, progress=False)
    assert isinstance(member, vc.PerturbationPipeline) and "conformal" in member.metadata
    control = adata[adata.obs["condition"] == "control"]
    assert "conformal_lo_90" in member.predict(control, target="stimulated").var
    bare = EnsemblePipeline([member], [1.0], ["mean-shift"])           # the member's intervals are not the ensemble's
    assert not any(c.startswith("conformal_") for c in bare.predict(control, target="stimulated").var.columns)
    wrapped = EnsemblePipeline([member], [1.0], ["mean-shift"], member.metadata, spread={"gene_0": 2.0})
    _same_columns(wrapped.predict(control, target="stimulated"),
                  predict_interval(wrapped, control, target="stimulated"))
