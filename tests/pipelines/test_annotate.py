"""Label transfer (annotate verb and CLI) and the representation benchmark on synthetic data."""

import json
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from virtualcell import DataError
from virtualcell.cli import app
from virtualcell.evaluate.report import write_h5ad
from virtualcell.pipelines.annotate import annotate
from virtualcell.testing.synthetic import tiny_expression

runner = CliRunner()


def _reference_and_query(n=180, genes=30):
    x, names = tiny_expression(n_cells=n, n_genes=genes)
    types = np.array(["B", "Mono", "T"])[np.arange(n) % 3]
    obs = pd.DataFrame({"cell_type": types}, index=[f"c{i}" for i in range(n)])
    cells = ad.AnnData(X=x.numpy(), obs=obs, var=pd.DataFrame(index=names))
    reference, query = cells[:120].copy(), cells[120:].copy()
    truth = query.obs.pop("cell_type").to_numpy()
    return reference, query, truth


def test_annotate_writes_labels_confidence_and_probabilities(one_torch_thread):
    reference, query, truth = _reference_and_query()
    before = query.copy()
    out = annotate(query, reference, label_key="cell_type", encoder={"name": "pca", "n_components": 5}, copy=True)
    assert query.obs.columns.tolist() == before.obs.columns.tolist() and not query.obsm   # copy=True: untouched
    assert (out.obs["cell_type_predicted"].astype(str).to_numpy() == truth).mean() > 0.9
    probabilities = out.obsm["cell_type_predicted_probabilities"]
    np.testing.assert_allclose(probabilities.sum(1), 1, rtol=1e-5)
    np.testing.assert_allclose(out.obs["cell_type_predicted_confidence"], probabilities.max(1), rtol=1e-6)
    info = out.uns["cell_type_predicted"]
    assert info["classes"] == ["B", "Mono", "T"] and info["n_genes"] == 30 and "temperature" in info["calibration"]


def test_annotate_in_place_with_the_transformer(one_torch_thread):
    reference, query, _ = _reference_and_query()
    encoder = {"name": "transformer", "hidden_size": 16, "num_layers": 1, "num_heads": 2, "max_epochs": 1}
    assert annotate(query, reference, label_key="cell_type", encoder=encoder, key_added="label") is None
    assert set(query.obs["label"].astype(str)) <= {"B", "Mono", "T"}
    assert query.obsm["label_probabilities"].shape == (60, 3)


def test_annotate_errors_teach():
    reference, query, _ = _reference_and_query()
    with pytest.raises(DataError, match=r"label_key 'celltype' is not a column .*cell_type"):
        annotate(query, reference, label_key="celltype")
    reference.obs.loc[reference.obs_names[:3], "cell_type"] = np.nan
    with pytest.raises(DataError, match="3 missing labels"):
        annotate(query, reference, label_key="cell_type")
    reference, query, _ = _reference_and_query()
    renamed = query[:, :10].copy()
    with pytest.raises(DataError, match=r"only 10 of the reference's 30 genes"):
        annotate(renamed, reference, label_key="cell_type")


def test_cli_annotate(tmp_path, one_torch_thread):
    reference, query, truth = _reference_and_query()
    write_h5ad(reference, tmp_path / "ref.h5ad")
    write_h5ad(query, tmp_path / "query.h5ad")
    args = ["annotate", "--query", str(tmp_path / "query.h5ad"), "--reference", str(tmp_path / "ref.h5ad"),
            "--label-key", "cell_type", "--encoder-option", "n_components=5"]
    result = runner.invoke(app, args + ["--out", str(tmp_path / "query.h5ad")])
    assert result.exit_code != 0 and "never writes over its input" in result.output
    result = runner.invoke(app, args + ["--out", str(tmp_path / "out.h5ad")])
    assert result.exit_code == 0, result.output
    out = ad.read_h5ad(tmp_path / "out.h5ad")
    assert (out.obs["cell_type_predicted"].astype(str).to_numpy() == truth).mean() > 0.9
    assert "labelled 60 cells" in result.output


def test_benchmark_represent_cli(tmp_path, one_torch_thread):
    from virtualcell.datasets import simulate_perturbation

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = simulate_perturbation(n_cells_per_group=20, n_genes=30, seed=0)
    write_h5ad(adata, tmp_path / "sim.h5ad")
    result = runner.invoke(app, ["benchmark", "represent", "--data", str(tmp_path / "sim.h5ad"), "--out",
                                 str(tmp_path / "rep.json"), "--encoders", "pca,transformer", "--label-key", "cell_type",
                                 "--exclude-labels", "", "--preprocess", "none", "--quiet",
                                 "--encoder-option", "transformer.hidden_size=16",
                                 "--encoder-option", "transformer.num_heads=2", "--encoder-option", "pca.n_components=5"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "rep.json").read_text())
    assert list(report["results"]) == ["pca", "transformer"]
    assert report["results"]["transformer"]["encoder"]["config"]["hidden_size"] == 16
    for metrics in report["results"].values():
        assert 0 <= metrics["macro_f1"] <= 1 and -1 <= metrics["silhouette_condition"] <= 1
    assert report["protocol"]["n_reference"] == report["protocol"]["n_query"] == 60
    assert report["command"].startswith("virtualcell benchmark represent")


def test_integer_cluster_labels_are_labels():
    reference, query, _ = _reference_and_query()
    reference.obs["leiden"] = pd.factorize(reference.obs["cell_type"])[0]
    out = annotate(query, reference, label_key="leiden", encoder={"name": "pca", "n_components": 5}, copy=True,
                   progress=False)
    assert set(out.obs["leiden_predicted"].astype(str)) <= {"0", "1", "2"}


def test_annotate_shows_progress(capsys, monkeypatch):
    """Issue 21 item 11: a transformer ran for minutes without a word."""
    monkeypatch.setenv("VIRTUALCELL_PROGRESS", "1")
    reference, query, _ = _reference_and_query(genes=12)
    annotate(query, reference, label_key="cell_type", copy=True,
             encoder={"name": "transformer", "hidden_size": 8, "num_layers": 1, "num_heads": 1, "max_epochs": 1})
    err = capsys.readouterr().err
    assert "transformer" in err and "label" in err.lower()
