"""The exporter to cell-eval's layout (cell-eval itself is a `benchmarks` extra, not needed here)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest

from virtualcell.evaluate.celleval_export import celleval_pair, write_celleval_pair


@pytest.fixture
def parts():
    rng = np.random.default_rng(0)
    genes = [f"g{i}" for i in range(6)]
    control = rng.random((5, 6))
    predicted = {"KO_A": rng.random((5, 6)), "KO_B": rng.random((5, 6))}
    real = {"KO_A": rng.random((3, 6)), "KO_B": rng.random((4, 6))}
    return predicted, real, control, genes


def test_layout_controls_in_both_and_labels_per_cell(parts):
    predicted, real, control, genes = parts
    pred, truth = celleval_pair(predicted, real, control, genes)
    assert list(pred.var_names) == list(truth.var_names) == genes
    assert pred.obs["target"].tolist() == ["non-targeting"] * 5 + ["KO_A"] * 5 + ["KO_B"] * 5
    assert truth.obs["target"].tolist() == ["non-targeting"] * 5 + ["KO_A"] * 3 + ["KO_B"] * 4
    np.testing.assert_allclose(pred.X[:5], control, rtol=1e-6)
    np.testing.assert_allclose(truth.X[:5], control, rtol=1e-6)
    np.testing.assert_allclose(pred.X[5:10], predicted["KO_A"], rtol=1e-6)
    np.testing.assert_allclose(truth.X[8:], real["KO_B"], rtol=1e-6)
    assert pred.obs_names.is_unique and truth.obs_names.is_unique
    custom, _ = celleval_pair(predicted, real, control, genes, pert_col="gene", control_label="control")
    assert set(custom.obs["gene"]) == {"control", "KO_A", "KO_B"}


def test_written_files_read_back(parts, tmp_path):
    pred, truth = celleval_pair(*parts)
    paths = write_celleval_pair(tmp_path / "ce", pred, truth)
    assert [p.name for p in paths] == ["pred.h5ad", "real.h5ad"]
    again = ad.read_h5ad(paths[0])
    np.testing.assert_array_equal(again.X, pred.X)
    assert again.obs["target"].astype(str).tolist() == pred.obs["target"].astype(str).tolist()


def test_bad_input_names_the_problem(parts):
    predicted, real, control, genes = parts
    with pytest.raises(ValueError, match="same perturbations"):
        celleval_pair({"KO_A": predicted["KO_A"]}, real, control, genes)
    with pytest.raises(ValueError, match="control label"):
        celleval_pair({"non-targeting": control}, {"non-targeting": control}, control, genes)
    with pytest.raises(ValueError, match=r"predicted\['KO_A'\] must be"):
        celleval_pair({**predicted, "KO_A": np.ones((2, 5))}, real, control, genes)


def test_cell_eval_accepts_the_pair(parts):
    types = pytest.importorskip("cell_eval._types", reason="cell-eval is in the 'benchmarks' extra")
    pred, truth = celleval_pair(*parts)
    pair = types.PerturbationAnndataPair(real=truth, pred=pred, control_pert="non-targeting", pert_col="target")
    assert sorted(pair.perts) == ["KO_A", "KO_B"]
