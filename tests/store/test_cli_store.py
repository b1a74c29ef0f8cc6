"""`virtualcell embed` (memory, stream, Dask scheduler) and `virtualcell query` (--filter, --out)."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from virtualcell.cli import app
from virtualcell.store import EmbeddingStore

runner = CliRunner()


@pytest.fixture(scope="module")
def stored(atlas, tmp_path_factory):
    folder, adata, pipeline = atlas
    model = pipeline.save(tmp_path_factory.mktemp("model") / "pipeline")
    store = tmp_path_factory.mktemp("cli") / "cells.zarr"
    result = runner.invoke(app, ["embed", "--data", str(folder / "atlas.h5ad"), "--encoder", str(model),
                                 "--store", str(store), "--key", "pca", "--mode", "stream", "--chunk-rows", "16"])
    assert result.exit_code == 0, result.output
    assert "streaming" in result.output and f"stored {adata.n_obs} cells x 6 dimensions" in result.output
    return store, model, adata


def test_memory_mode_matches_streaming(stored, atlas):
    store, model, adata = stored
    folder = atlas[0]
    result = runner.invoke(app, ["embed", "--data", str(folder / "atlas.h5ad"), "--encoder", str(model),
                                 "--store", str(store), "--key", "mem", "--mode", "memory"])
    assert result.exit_code == 0 and "streaming" not in result.output
    opened = EmbeddingStore(store, mode="r")
    np.testing.assert_allclose(opened.values("mem"), opened.values("pca"), atol=1e-4)
    result = runner.invoke(app, ["embed", "--data", str(folder / "atlas.h5ad"), "--encoder", str(model),
                                 "--store", str(store), "--key", "pca"])
    assert result.exit_code == 2 and "overwrite=True" in result.output
    result = runner.invoke(app, ["embed", "--data", str(folder / "atlas.h5ad"), "--encoder", str(model),
                                 "--store", str(store), "--key", "x", "--scheduler", "local:0"])
    assert result.exit_code == 2 and "local:N with N >= 1" in result.output


def test_query_prints_neighbours_and_writes_out(stored, tmp_path):
    store, _, adata = stored
    result = runner.invoke(app, ["query", "--store", str(store), "--key", "pca", "--k", "3",
                                 "--cells", 'cell_type == "type_0" & condition == "control"',
                                 "--filter", 'condition == "control"', "--out", str(tmp_path / "n.tsv")])
    assert result.exit_code == 0, result.output
    n_query = int(((adata.obs.cell_type == "type_0") & (adata.obs.condition == "control")).sum())
    assert f"{n_query} query cells, 3 neighbours each" in result.output
    first = adata.obs_names[((adata.obs.cell_type == "type_0") & (adata.obs.condition == "control")).to_numpy()][0]
    assert f"  {first}: " in result.output
    frame = pd.read_csv(tmp_path / "n.tsv", sep="\t")
    assert len(frame) == 3 * n_query and set(frame["condition"]) == {"control"}
    assert not (frame["query"] == frame["cell"]).any(), "a query cell is not its own neighbour"
    for suffix in (".parquet", ".h5ad"):
        result = runner.invoke(app, ["query", "--store", str(store), "--key", "pca", "--k", "2", "--cells",
                                     "cell_type=type_1", "--out", str(tmp_path / f"n{suffix}")])
        assert result.exit_code == 0, result.output
    assert len(pd.read_parquet(tmp_path / "n.parquet")) == ad.read_h5ad(tmp_path / "n.h5ad").n_obs


@pytest.mark.parametrize("args, message", [
    (["--cells", "celltype == 'x'"], "no column 'celltype' (columns: ["),
    (["--cells", "cell_type == "], "expected a value"),
    (["--cells", "cell_type=type_0", "--k", "0"], "--k 0: it must lie in [1,"),
    (["--cells", "cell_type=type_0", "--k", "100000"], "--k 100000"),
    (["--cells", "cell_type=nobody"], "No stored cell of 'pca' matches --cells 'cell_type=nobody' ('cell_type' holds "
                                      "'type_0', 'type_1')"),
    # issue 21 item 4: a filter matching nothing says so and lists the column's values (was "--k 10: [1, -1]")
    (["--cells", "cell_type=type_0", "--filter", 'condition in ["stim"]'],
     "No stored cell of 'pca' matches --filter 'condition in [\"stim\"]' ('condition' holds 'control', 'stimulated')"),
    (["--cells", "index=nobody"], "no stored cell of 'pca' is named so"),
    (["--cells", "cell_type=type_0", "--approximate"], "no approximate index"),
    (["--cells", "cell_type=type_0", "--out", "x.csv"], "must be .tsv, .parquet or .h5ad"),
])
def test_query_errors_are_explained(stored, args, message):
    store = stored[0]
    result = runner.invoke(app, ["query", "--store", str(store), "--key", "pca"] + args)
    assert result.exit_code == 2 and message in result.output, result.output


def test_build_index_then_approximate_query(stored, tmp_path):
    import shutil

    store = tmp_path / "copy.zarr"
    shutil.copytree(stored[0], store)
    result = runner.invoke(app, ["query", "--store", str(store), "--key", "pca", "--cells", "cell_type=type_0",
                                 "--k", "3", "--build-index", "--approximate"])
    assert result.exit_code == 0, result.output
    from virtualcell.store.ann import default_library

    assert f"index: {default_library()}, recall@10" in result.output


def test_auto_mode_streams_when_memory_is_short(stored, atlas, monkeypatch):
    import virtualcell.cli.store as commands

    store, model, _ = stored
    monkeypatch.setattr(commands, "STREAM_SHARE", 0.0)  # as if the data were larger than free memory
    result = runner.invoke(app, ["embed", "--data", str(atlas[0] / "atlas.h5ad"), "--encoder", str(model),
                                 "--store", str(store), "--key", "auto"])
    assert result.exit_code == 0 and "streaming" in result.output and "GiB free" in result.output


def test_query_refuses_an_existing_out_without_overwrite(stored, tmp_path):
    """Issue 21 item 18: `query --out existing.tsv` overwrote it; now --overwrite is needed."""
    out = tmp_path / "mine.tsv"
    out.write_text("my own table\n")
    args = ["query", "--store", str(stored[0]), "--key", "pca", "--cells", "cell_type=type_0", "--k", "2", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "already exists; pass --overwrite" in result.output, result.output
    assert out.read_text() == "my own table\n"
    result = runner.invoke(app, args + ["--overwrite"])
    assert result.exit_code == 0, result.output
    assert "query\trank" in out.read_text()


def test_query_cells_on_an_integer_column(stored):
    """Issue 21 item 21: `--cells batch=1` on an integer column raised TypeError; it compares as numbers now."""
    store, _, adata = stored
    result = runner.invoke(app, ["query", "--store", str(store), "--key", "pca", "--cells", "batch=1", "--k", "2"])
    assert result.exit_code == 0, result.output
    assert f"{int((adata.obs.batch == 1).sum())} query cells, 2 neighbours each" in result.output


def test_embed_refuses_overwrite_with_append(stored, atlas):
    """Issue 21 item 26: --overwrite --append together were accepted."""
    store, model, _ = stored
    result = runner.invoke(app, ["embed", "--data", str(atlas[0] / "atlas.h5ad"), "--encoder", str(model),
                                 "--store", str(store), "--key", "pca", "--overwrite", "--append"])
    assert result.exit_code == 2 and "choose one" in result.output, result.output
    assert EmbeddingStore(store, mode="r").snapshot("pca").n_rows == atlas[1].n_obs
