"""Components fitted from disk (PCA encoder, mlp decoder), the small-file rule and the refusals:
``vc.PerturbationPipeline(...).fit(path)`` against the same fit on the AnnData in memory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

import virtualcell as vc
from virtualcell.data.checks import DataError
from virtualcell.data.simulate_perturbation import simulate_perturbation
from virtualcell.pipelines.fit_from_disk_components import reads_whole

RECIPE = {"normalize_total": 1e4, "log1p": True, "n_top_genes": 24, "hvg_flavor": "seurat"}
BLOCKS = {"exact": False, "block_size": 8, "pool_blocks": 2}      # the shuffled-block loader on a small file
PCA = {"name": "pca", "n_components": 6}
MLP = {"name": "mlp-decoder", "n_hidden": 16, "max_epochs": 3, "batch_size": 32}


@pytest.fixture(scope="module")
def store(counts_store):
    """360 cells x 40 genes of simulated counts, CSR h5ad; and 30 control cells to predict from."""
    adata, path = counts_store
    return adata, path, adata[adata.obs["condition"] == "control"][:30].copy()


def _fit(data, *, decoder=None, disk=None, encoder=PCA, preprocess=RECIPE):
    pipe = vc.PerturbationPipeline(encoder=dict(encoder), decoder=dict(decoder) if decoder else None,
                                   preprocess=dict(preprocess) if isinstance(preprocess, dict) else preprocess)
    return pipe.fit(data, context_key="cell_type", progress=False, seed=0, disk=disk)


def _predict(pipe, control):
    return np.asarray(pipe.predict(control, target="stimulated").X)


def test_pca_encoder_from_disk_is_the_in_memory_pca(store):
    adata, path, control = store
    memory = _fit(adata)
    for disk in ({"exact": True}, BLOCKS):
        pipe = _fit(str(path), disk=disk)
        assert pipe.metadata["training"]["from_disk"] and "read_whole" not in pipe.metadata["training"]
        assert pipe.encoder.input_features == memory.encoder.input_features
        np.testing.assert_allclose(pipe.encoder.components.numpy(), memory.encoder.components.numpy(), atol=1e-4)
        np.testing.assert_allclose(pipe.encoder.explained_variance.numpy(),
                                   memory.encoder.explained_variance.numpy(), rtol=1e-4)
        np.testing.assert_allclose(_predict(pipe, control), _predict(memory, control), atol=1e-4)


def test_mlp_decoder_from_disk_matches_memory_and_runs_on_blocks(store):
    adata, path, control = store
    memory = _fit(adata, decoder=MLP)
    exact = _fit(str(path), decoder=MLP, disk={"exact": True})
    np.testing.assert_allclose(_predict(exact, control), _predict(memory, control), atol=1e-4)
    blocks = _fit(ad.read_h5ad(path, backed="r"), decoder=MLP, disk=BLOCKS)
    record = blocks.decoder.training_history
    assert record["n_epochs"] == 3 and record["cells_per_s"] > 0 and np.isfinite(record["epochs"][-1]["nll"])
    assert np.isfinite(_predict(blocks, control)).all()


def test_mlp_decoder_nb_from_disk(store):
    adata, path, control = store
    counts = {"raw_counts": True}
    nb = dict(MLP, likelihood="nb")
    memory = _fit(adata, decoder=nb, preprocess=counts)
    exact = _fit(str(path), decoder=nb, preprocess=counts, disk={"exact": True})
    np.testing.assert_allclose(_predict(exact, control), _predict(memory, control), rtol=1e-4, atol=1e-4)


def test_small_file_rule_is_a_priori_and_gives_the_in_memory_fit(store):
    adata, path, control = store
    assert reads_whole({}, 4096) and not reads_whole({}, 4097)
    assert reads_whole({"block_size": 8, "pool_blocks": 45}, 360)
    assert not reads_whole({"block_size": 8, "pool_blocks": 2}, 360)
    assert not reads_whole({"exact": False}, 10) and not reads_whole({"exact": True}, 10)
    vae = {"name": "vae", "n_hidden": 16, "n_latent": 4, "max_epochs": 2, "batch_size": 32}
    memory = _fit(adata, encoder=vae)
    default = _fit(str(path), encoder=vae)                      # 360 cells <= 4,096: read whole
    assert default.metadata["training"]["read_whole"] and default.metadata["training"]["from_disk"]
    np.testing.assert_array_equal(_predict(default, control), _predict(memory, control))
    assert default.metadata["training"]["data_fingerprint"] == memory.metadata["training"]["data_fingerprint"]
    loader = _fit(str(path), encoder=vae, disk={"block_size": 8, "pool_blocks": 2})   # 16 < 360: the loader
    assert "read_whole" not in loader.metadata["training"]


def test_refusals_name_the_fix(store):
    _, path, _ = store
    with pytest.raises(DataError, match="encoder='vae', 'pca' or 'transformer'.*pass it fitted"):
        _fit(str(path), encoder={"name": "graph", "n_latent": 4, "max_steps": 1}, disk={"exact": True})
    with pytest.raises(DataError, match="decoder='mlp-decoder'"):
        _fit(str(path), decoder={"name": "label-decoder"}, disk={"exact": True})


def test_fitted_transformer_encodes_from_disk_and_its_mlp_decoder_trains_there(tmp_path):
    adata = simulate_perturbation(15, 40, 3, counts=True, seed=1)      # 90 cells: the default mlp trains 50 epochs
    adata.write_h5ad(tmp_path / "small.h5ad")
    transformer = {"name": "transformer", "hidden_size": 16, "num_layers": 1, "num_heads": 2, "max_epochs": 1}
    pretrained = _fit(adata, encoder=transformer, decoder=MLP, preprocess="log1p").encoder   # pretrained in memory
    pipe = vc.PerturbationPipeline(encoder=pretrained, preprocess="log1p")
    pipe.fit(str(tmp_path / "small.h5ad"), context_key="cell_type", progress=False, disk=BLOCKS)
    assert type(pipe.decoder).__name__ == "MLPDecoder" and pipe.decoder.training_history["cells_per_s"] > 0
    assert "read_whole" not in pipe.metadata["training"]               # encoded and decoded from disk
    control = adata[adata.obs["condition"] == "control"][:10].copy()
    assert np.isfinite(_predict(pipe, control)).all()


DDP_WORKER = textwrap.dedent("""
    import sys
    import numpy as np, torch
    from virtualcell.instruments.decoders.mlp import MLPDecoder
    from virtualcell.train import distributed
    from virtualcell.train.disk_loader import DiskRows

    path, out = sys.argv[1:3]
    context = distributed.init_from_env("cpu")
    torch.set_num_threads(1)
    rows = DiskRows(path)
    rows.loader_options = {"block_size": 16, "pool_blocks": 2}
    z = torch.from_numpy(np.random.default_rng(0).normal(size=(len(rows), 3)).astype(np.float32))
    decoder = MLPDecoder(n_hidden=16, max_epochs=2, batch_size=16)
    decoder.fit(z, rows, [f"g{i}" for i in range(rows.shape[1])], seed=0, progress=False)
    torch.save(decoder.state_dict(), f"{out}.{context.rank}.pt")
    distributed.shutdown()
""")


def test_mlp_decoder_from_disk_trains_data_parallel(tmp_path):
    """2 gloo processes, each reading its shard: DDP averages the gradients of the net and the per-gene
    dispersion, so both processes end with the same decoder."""
    x = np.log1p(np.random.default_rng(0).poisson(2.0, size=(256, 12))).astype(np.float32)
    ad.AnnData(X=sp.csr_matrix(x)).write_h5ad(tmp_path / "cells.h5ad")
    (tmp_path / "worker.py").write_text(DDP_WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VIRTUALCELL_PROGRESS": "0"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           str(tmp_path / "worker.py"), str(tmp_path / "cells.h5ad"), str(tmp_path / "decoder")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"decoder.{r}.pt") for r in range(2)]
    assert ranks[0]["dispersion"].abs().sum() > 0
    for key, value in ranks[0].items():
        torch.testing.assert_close(value, ranks[1][key], msg=key)



def test_annotations_hold_the_needed_columns_without_cell_names(store):
    """Millions of cell names cost ~60 bytes a cell as strings: the fit reads its columns (categoricals stay
    categorical) on a positional index and only the first names, which the data fingerprint hashes."""
    from virtualcell.pipelines.fit_from_disk import read_annotations

    adata, path, _ = store
    annotations = read_annotations(str(path), ["condition", "cell_type"])
    assert isinstance(annotations.obs.index, pd.RangeIndex) and list(annotations.obs.columns) == ["condition", "cell_type"]
    assert isinstance(annotations.obs["condition"].dtype, pd.CategoricalDtype)
    assert annotations.shape == adata.shape and list(annotations.var_names) == list(adata.var_names)
    assert annotations.head_names == list(adata.obs_names[:1000])
    assert list(read_annotations(str(path), ["condition", "plate"]).obs.columns) == list(adata.obs.columns)
    pipe = vc.PerturbationPipeline(encoder=dict(PCA), preprocess="log1p")
    with pytest.raises(DataError, match="'plate' is not a column of adata.obs; available columns: .*cell_type"):
        pipe.fit(str(path), context_key="plate", progress=False, disk={"exact": True})
    fitted = _fit(str(path), disk={"exact": True})
    assert fitted.metadata["training"]["data_fingerprint"] == _fit(adata).metadata["training"]["data_fingerprint"]


def test_lean_annotations_give_the_model_of_the_whole_obs_with_string_labels(store, monkeypatch):
    """The fit on the lean annotations (positional index, categorical labels) is the very model fitted on the
    whole obs with every cell name and one string label per cell (how it was read before): bit for bit."""
    import virtualcell.pipelines.fit_from_disk as ffd
    from virtualcell.pipelines.fit_labels import training_labels

    adata, path, control = store
    vae = {"name": "vae", "n_hidden": 16, "n_latent": 4, "max_epochs": 2, "batch_size": 32}
    lean = [_fit(str(path), encoder=vae, disk=disk) for disk in ({"exact": True}, BLOCKS)]
    read = ffd.read_annotations
    monkeypatch.setattr(ffd, "read_annotations", lambda source, columns=None, names=False: read(source, names=True))
    monkeypatch.setattr(ffd, "training_labels", lambda *a, **k: training_labels(*a, **{**k, "categorical": False}))
    whole = [_fit(str(path), encoder=vae, disk=disk) for disk in ({"exact": True}, BLOCKS)]
    for a, b in zip(lean, whole):
        np.testing.assert_array_equal(_predict(a, control), _predict(b, control))
        assert a.metadata["conditions"] == b.metadata["conditions"] and a.metadata["contexts"] == b.metadata["contexts"]
        assert a.metadata["training"]["data_fingerprint"] == b.metadata["training"]["data_fingerprint"]


def test_shards_annotations_are_anndata_concat_without_names(tmp_path):
    """Shards with other categories, in other orders, and a column one shard lacks: the lean obs is
    ``anndata.concat(join="outer")``'s obs on a positional index (categories unified in natural order)."""
    from virtualcell.pipelines.fit_from_disk import read_annotations

    adata = simulate_perturbation(20, 8, 3, counts=True, seed=2)
    adata.obs["cell_type"] = adata.obs["cell_type"].astype(str).str.replace("_", "")
    parts = [adata[:50].copy(), adata[50:].copy()]
    parts[0].obs["cell_type"] = pd.Categorical(parts[0].obs["cell_type"].replace({"type0": "type10"}))
    parts[1].obs["dose"] = 1.0
    for i, part in enumerate(parts):
        part.write_h5ad(tmp_path / f"p{i}.h5ad")
    paths = [tmp_path / "p0.h5ad", tmp_path / "p1.h5ad"]
    lean, joined = read_annotations(paths), read_annotations(paths, names=True)
    assert isinstance(lean.obs.index, pd.RangeIndex) and list(joined.obs.index) == list(adata.obs_names)
    pd.testing.assert_frame_equal(lean.obs, joined.obs.reset_index(drop=True), check_like=True)
    assert lean.head_names == joined.head_names == list(adata.obs_names)
    assert list(lean.obs["cell_type"].cat.categories) == ["type1", "type2", "type10"]   # not sorted()


def test_categorical_labels_give_the_ids_of_string_labels():
    """``training_labels(categorical=True)``: one code per cell instead of one string, the same vocabularies,
    ids and warnings; a category without cells and non-string categories change nothing."""
    from virtualcell.pipelines.fit_labels import FewCellsWarning, encode_labels, training_labels

    adata = simulate_perturbation(10, 8, 3, seed=3)
    adata.obs["condition"] = adata.obs["condition"].cat.add_categories(["unused", "rare"])
    adata.obs["plate"] = pd.Categorical(np.arange(adata.n_obs) % 3)          # integer categories
    adata.obs.loc[adata.obs_names[:2], "condition"] = "rare"
    results = []
    for categorical in (False, True):
        with pytest.warns(FewCellsWarning, match=r"\{'rare': 2\}"):
            labels, conditions, contexts = training_labels(adata, condition_key="condition", control="control",
                                                           context_key="plate", categorical=categorical)
        assert isinstance(labels, pd.Categorical) == categorical
        results.append((conditions.labels, contexts.labels, encode_labels(conditions, labels),
                        encode_labels(contexts, adata.obs["plate"])))
    assert results[0][:2] == results[1][:2]
    for a, b in zip(results[0][2:], results[1][2:]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(results[1][3], np.arange(adata.n_obs) % 3)
