"""Issue 21 item 3: the streaming source reads what anndata reads, legacy h5ad layouts included
(``obs``/``var`` as compound datasets, as anndata < 0.7 wrote them, e.g. the Kang file of scGen)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import torch

import virtualcell as vc
from virtualcell.store import EmbeddingStore

KANG = Path(os.environ.get("VIRTUALCELL_DATA") or Path(__file__).resolve().parents[2].parent / "shared" / "data") \
    / "kang_pbmc_scgen_valid.h5ad"


def _legacy_h5ad(path: Path, n: int = 30, genes: int = 12) -> Path:
    """An h5ad in the pre-0.7 layout: obs/var compound datasets, a dense X, categories in uns."""
    import h5py

    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as handle:
        handle["X"] = rng.poisson(3, (n, genes)).astype(np.float32)
        handle["obs"] = np.array([(f"c{i}".encode(), i % 2, float(i)) for i in range(n)],
                                 dtype=[("index", "S8"), ("condition", "i1"), ("n_counts", "<f4")])
        handle["var"] = np.array([(f"g{j}".encode(), j) for j in range(genes)], dtype=[("index", "S8"), ("n_cells", "<i8")])
        handle.create_group("uns")["condition_categories"] = np.array([b"control", b"stimulated"])
    return path


@pytest.fixture
def legacy(tmp_path):
    path = _legacy_h5ad(tmp_path / "legacy.h5ad")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = ad.read_h5ad(path)
    encoder = vc.create("pca", n_components=3).fit(torch.from_numpy(np.log1p(adata.X)), list(adata.var_names))
    return path, adata, encoder


def test_embed_streams_a_legacy_h5ad(legacy, tmp_path, capsys):
    path, adata, encoder = legacy
    state = vc.embed(path, encoder, preprocess="log1p", store=tmp_path / "s.zarr", key_added="pca", chunk_rows=7)
    assert state.n_rows == adata.n_obs and "older AnnData layout" in capsys.readouterr().err
    stored = EmbeddingStore(tmp_path / "s.zarr", mode="r").read("pca")
    expected = vc.embed(adata, encoder, preprocess="log1p", copy=True).obsm["X_virtualcell"]
    np.testing.assert_allclose(stored.values, expected, atol=1e-5)
    assert stored.obs.index.tolist() == adata.obs_names.tolist()
    assert stored.obs["condition"].astype(str).tolist() == adata.obs["condition"].astype(str).tolist()


def test_cli_embeds_a_legacy_h5ad(legacy, tmp_path):
    path, adata, encoder = legacy
    model = encoder.save(tmp_path / "encoder")
    for mode in ("auto", "stream"):
        result = subprocess.run([sys.executable, "-m", "virtualcell.cli", "embed", "--data", str(path), "--encoder", str(model),
                                 "--store", str(tmp_path / f"{mode}.zarr"), "--preprocess", "log1p", "--mode", mode],
                                capture_output=True, text=True, env={**os.environ, "VIRTUALCELL_PROGRESS": "0"})
        assert result.returncode == 0, result.stderr
        assert f"stored {adata.n_obs} cells x 3 dimensions" in result.stdout and "Traceback" not in result.stderr


@pytest.mark.data
@pytest.mark.skipif(not KANG.exists(), reason=f"needs {KANG} (the shared data folder)")
def test_embed_streams_the_kang_file(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = ad.read_h5ad(KANG)
    encoder = vc.create("pca", n_components=4).fit(torch.from_numpy(adata.X[:300].toarray()), list(adata.var_names))
    state = vc.embed(KANG, encoder, store=tmp_path / "s.zarr", key_added="pca", chunk_rows=512)
    assert (state.n_rows, state.dim) == (adata.n_obs, 4)
    obs = EmbeddingStore(tmp_path / "s.zarr", mode="r").obs("pca", ["condition"])
    assert set(obs["condition"].astype(str)) == set(adata.obs["condition"].astype(str))


def test_the_old_import_path_warns_and_is_the_same_class():
    code = ("import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
            "try:\n    import virtualcell.representations.store\nexcept DeprecationWarning as w:\n    print(w)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "moved to virtualcell.store" in out
    with pytest.warns(DeprecationWarning):
        import importlib

        import virtualcell.representations.store as old

        importlib.reload(old)
    assert old.EmbeddingStore is EmbeddingStore
