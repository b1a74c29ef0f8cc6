"""spatial_domains (graph, PCA, neighbour-average), its plot and the `virtualcell domains` command."""

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score
from typer.testing import CliRunner

from virtualcell.cli import app
from virtualcell.data.simulate_spatial import simulate_spatial
from virtualcell.pipelines.domain_plot import plot_spatial_domains
from virtualcell.pipelines.domains import prepare_expression, spatial_domains

FAST = {"max_steps": 60, "batch_size": 128, "hidden": 16, "n_latent": 8, "lr": 5e-3}


@pytest.fixture(scope="module")
def slide():
    # the same cell types everywhere and a weak, noisy domain signal in each cell: space separates the layers
    return simulate_spatial(200, 20, n_domains=3, concentration=50.0, noise=1.5, domain_shift=0.6, seed=2)


def test_space_helps_on_a_simulated_slide(slide):
    scores = {}
    for method in ("pca", "neighbour-average", "graph"):
        out = spatial_domains(slide, method=method, n_domains=3, encoder=FAST if method == "graph" else None,
                              copy=True, progress=False)
        scores[method] = adjusted_rand_score(slide.obs["true_domain"], out.obs["domain"])
    assert scores["neighbour-average"] > scores["pca"] + 0.1
    assert scores["graph"] > scores["pca"] + 0.1, scores


def test_scanpy_conventions(slide):
    adata = slide.copy()
    assert spatial_domains(adata, method="graph", n_domains=3, encoder=FAST, progress=False, key_added="niche") is None
    assert adata.obs["niche"].dtype == "category" and list(adata.obs["niche"].cat.categories) == ["0", "1", "2"]
    assert adata.obsm["X_graph"].shape == (200, 8)
    assert adata.obsp["spatial_connectivities"].shape == (200, 200)
    record = adata.uns["niche"]
    assert record["method"] == "graph" and record["n_neighbors"] == 10 and record["preprocess"] == "none"
    assert record["encoder"] and record["training"]["steps"] == 60
    copy = spatial_domains(slide, method="pca", n_domains=3, copy=True)
    assert "domain" not in slide.obs and "X_pca_expression" not in slide.obsm and "X_pca_expression" in copy.obsm
    again = spatial_domains(slide, method="pca", n_domains=3, copy=True)
    assert np.array_equal(copy.obs["domain"], again.obs["domain"])      # same seed, same domains


def test_sections_and_counts():
    adata = simulate_spatial(180, 10, n_sections=2, counts=True, seed=1)
    x, recipe = prepare_expression(adata)
    assert recipe == "log1p" and np.allclose(np.expm1(x).sum(1)[np.expm1(x).sum(1) > 0].std(), 0, atol=1e-2)
    out = spatial_domains(adata, method="neighbour-average", section_key="section", n_domains=3, copy=True)
    section = adata.obs["section"].cat.codes.to_numpy()
    rows, cols = out.obsp["spatial_connectivities"].nonzero()
    assert np.array_equal(section[rows], section[cols])
    assert out.uns["domain"]["preprocess"] == "log1p" and out.uns["domain"]["section_key"] == "section"


def test_a_trained_encoder_applies_to_another_slide(slide):
    _, encoder = spatial_domains(slide, n_domains=3, encoder=FAST, copy=True, progress=False, return_encoder=True)
    other = simulate_spatial(150, 20, n_domains=3, concentration=50.0, noise=1.5, domain_shift=0.6, seed=9)
    other = other[:, list(reversed(other.var_names))].copy()          # genes in another order: realigned
    out = spatial_domains(other, n_domains=3, encoder=encoder, copy=True, progress=False)
    assert out.obsm["X_graph"].shape == (150, 8) and out.uns["domain"]["pretrained"]
    with pytest.raises(Exception, match="gene_19"):      # the missing gene is named
        spatial_domains(other[:, 1:].copy(), n_domains=3, encoder=encoder, copy=True, progress=False)


def test_bad_input(slide):
    with pytest.raises(ValueError, match="method must be one of"):
        spatial_domains(slide, method="louvain", n_domains=3)
    with pytest.raises(ValueError, match="obsm keys"):
        spatial_domains(slide, spatial_key="xy", n_domains=3)


def test_plot_one_panel_per_section(tmp_path):
    adata = simulate_spatial(120, 6, n_sections=2, seed=0)
    figure = plot_spatial_domains(adata, key="true_domain", section_key="section", path=tmp_path / "d.png")
    assert len([ax for ax in figure.axes if ax.collections]) == 2
    assert (tmp_path / "d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_domains(slide, tmp_path):
    data = tmp_path / "slide.h5ad"
    slide.write_h5ad(data)
    runner = CliRunner()
    result = runner.invoke(app, ["domains", "--data", str(data), "--n-domains", "3", "--out", str(tmp_path / "o.h5ad"),
                                 "--plot", str(tmp_path / "o.png"), "--encoder", "max_steps=5", "--encoder", "hidden=8",
                                 "--save-encoder", str(tmp_path / "enc")])
    assert result.exit_code == 0, result.output
    assert "200 cells in 3 domains" in result.output
    import anndata as ad

    out = ad.read_h5ad(tmp_path / "o.h5ad")
    assert "domain" in out.obs and "X_graph" in out.obsm and (tmp_path / "o.png").exists()
    reused = runner.invoke(app, ["domains", "--data", str(data), "--n-domains", "3", "--out", str(tmp_path / "r.h5ad"),
                                 "--pretrained", str(tmp_path / "enc")])
    assert reused.exit_code == 0, reused.output
    again = ad.read_h5ad(tmp_path / "r.h5ad")
    np.testing.assert_allclose(again.obsm["X_graph"], out.obsm["X_graph"], atol=1e-5)   # same weights, same graph
    assert again.uns["domain"]["pretrained"] and not out.uns["domain"]["pretrained"]
    same = runner.invoke(app, ["domains", "--data", str(data), "--n-domains", "3", "--out", str(data)])
    assert same.exit_code != 0 and "never writes over its input" in same.output
    missing = runner.invoke(app, ["domains", "--data", str(data), "--n-domains", "3", "--spatial-key", "xy",
                                  "--out", str(tmp_path / "p.h5ad")])
    assert missing.exit_code != 0 and "obsm['xy'] not found" in missing.output and "spatial" in missing.output


def test_options_are_keyword_only():
    import inspect

    params = list(inspect.signature(spatial_domains).parameters.values())
    assert params[0].name == "adata" and all(p.kind is p.KEYWORD_ONLY for p in params[1:])


# -- issue 21 item 15: duplicated positions (items 23 and 26: tests/security/test_pipeline_inputs.py) ---------

def test_duplicated_coordinates_are_refused_then_deduplicated_with_a_warning(slide):
    import warnings as _warnings

    from virtualcell.data.spatial import SpatialGraphError

    adata = slide.copy()
    adata.obsm["spatial"][5] = adata.obsm["spatial"][4]
    adata.obsm["spatial"][9] = adata.obsm["spatial"][4]
    with pytest.raises(SpatialGraphError, match=r"2 cells at duplicated coordinates.*deduplicate=True.*--deduplicate"):
        spatial_domains(adata, method="neighbour-average", n_domains=3, copy=True)
    with pytest.warns(UserWarning, match=r"deduplicate=True: 2 of 200 cells repeat.*198 distinct positions"):
        out = spatial_domains(adata, method="neighbour-average", n_domains=3, copy=True, deduplicate=True)
    assert out.obs["domain"].notna().all() and out.n_obs == 200 and out.uns["domain"]["deduplicate"]
    graph = out.obsp["spatial_connectivities"]
    assert (graph[5] != graph[4]).nnz == 0 and (graph[9] != graph[4]).nnz == 0    # the first cell's neighbours
    assert graph[:, [5, 9]].nnz == 0 and graph.diagonal().sum() == 0
    with _warnings.catch_warnings():
        _warnings.simplefilter("error")
        spatial_domains(slide, method="pca", n_domains=3, copy=True, deduplicate=True)   # nothing repeated: silent


OSMFISH = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "spatial_osmfish_sscortex.h5ad"


@pytest.mark.skipif(not OSMFISH.exists(), reason=f"real data not found at {OSMFISH}")
def test_osmfish_runs_with_deduplicate():
    """Issue 21 item 15: osmFISH was refused for 527 duplicated coordinates, with no way through in the tool."""
    import anndata as ad

    adata = ad.read_h5ad(OSMFISH)
    with pytest.warns(UserWarning, match=r"527 of 6471 cells repeat"):
        spatial_domains(adata, method="neighbour-average", n_domains=11, deduplicate=True, progress=False)
    assert adata.obs["domain"].nunique() == 11


def test_cli_domains_has_the_deduplicate_option_its_error_names(slide, tmp_path):
    """The refusal said 'CLI: --deduplicate' but `virtualcell domains` had no such option."""
    adata = slide.copy()
    adata.obsm["spatial"][5] = adata.obsm["spatial"][4]
    data = tmp_path / "dup.h5ad"
    adata.write_h5ad(data)
    runner = CliRunner()
    args = ["domains", "--data", str(data), "--n-domains", "3", "--method", "neighbour-average"]
    refused = runner.invoke(app, [*args, "--out", str(tmp_path / "a.h5ad")])
    assert refused.exit_code == 2 and "--deduplicate" in refused.output
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "b.h5ad"), "--deduplicate"])
    assert result.exit_code == 0, result.output
    assert "warning: " in result.output and "1 of 200 cells repeat" in result.output
