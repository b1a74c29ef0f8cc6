"""A fit from disk whose manipulator needs only per-group sums of the latent codes streams them (never holds
[n_cells, d]): the same pipeline as the fit that holds them, and the identity encoder trains from disk then."""

from __future__ import annotations

import numpy as np
import pytest

import virtualcell as vc
import virtualcell.pipelines.fit_from_disk as fit_from_disk_module
from virtualcell.data.checks import DataError

RECIPE = {"normalize_total": 1e4, "log1p": True, "n_top_genes": 24, "hvg_flavor": "seurat"}
BLOCKS = {"exact": False, "block_size": 8, "pool_blocks": 2}
PCA = {"name": "pca", "n_components": 6}
VAE = {"name": "vae", "n_hidden": 16, "n_latent": 4, "max_epochs": 2, "batch_size": 32}


@pytest.fixture(scope="module")
def store(counts_store):
    """360 cells x 40 genes of simulated counts (3 cell types), CSR h5ad; 30 control cells to predict from."""
    adata, path = counts_store
    return adata, path, adata[adata.obs["condition"] == "control"][:30].copy()


def _fit(data, manipulator, *, encoder=PCA, decoder=None, disk=BLOCKS, context_key="cell_type"):
    pipe = vc.PerturbationPipeline(encoder=dict(encoder) if isinstance(encoder, dict) else encoder,
                                   manipulator=dict(manipulator) if isinstance(manipulator, dict) else manipulator,
                                   decoder=decoder, preprocess=dict(RECIPE))
    return pipe.fit(data, context_key=context_key, progress=False, seed=0, disk=disk)


def _predict(pipe, control):
    return np.asarray(pipe.predict(control, target="stimulated").X)


def _holding_codes(monkeypatch, *args, **kwargs):
    """The fit as before streaming: every code held, the manipulator fitted on them."""
    with monkeypatch.context() as patch:
        patch.setattr(fit_from_disk_module, "streams_codes", lambda pipe: False)
        return _fit(*args, **kwargs)


def _streaming(monkeypatch, *args, **kwargs):
    """The fit that streams, checked never to call ``fit`` on all codes."""
    def refuse(self, *a, **k):
        raise AssertionError("the streamed fit handed every code to Manipulator.fit")

    with monkeypatch.context() as patch:
        patch.setattr(vc.Manipulator, "fit", refuse)
        return _fit(*args, **kwargs)


@pytest.mark.parametrize("manipulator", ["control", "mean-shift", "mean-perturbation",
                                         {"name": "latent-arithmetic", "balance": False}, "latent-arithmetic"])
def test_streamed_codes_give_the_fit_that_holds_them(store, monkeypatch, manipulator):
    _, path, control = store
    streamed = _streaming(monkeypatch, str(path), manipulator)
    held = _holding_codes(monkeypatch, str(path), manipulator)
    for key, value in held.manipulator.state_dict().items():
        np.testing.assert_array_equal(streamed.manipulator.state_dict()[key].numpy(), value.numpy(), err_msg=key)
    for mine, theirs in zip(streamed.response_means, held.response_means):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    np.testing.assert_array_equal(_predict(streamed, control), _predict(held, control))


def test_vae_latent_arithmetic_streams_with_and_without_contexts(store, monkeypatch):
    _, path, control = store
    for context_key in ("cell_type", None):
        streamed = _streaming(monkeypatch, str(path), "latent-arithmetic", encoder=VAE, context_key=context_key)
        held = _holding_codes(monkeypatch, str(path), "latent-arithmetic", encoder=VAE, context_key=context_key)
        np.testing.assert_array_equal(streamed.manipulator.condition_means.numpy(),
                                      held.manipulator.condition_means.numpy())
        np.testing.assert_array_equal(_predict(streamed, control), _predict(held, control))
        assert (streamed.response_means is None) == (context_key is None)


def test_identity_encoder_and_mean_shift_from_disk_is_the_in_memory_fit(store):
    adata, path, control = store
    memory = _fit(adata, "mean-shift", encoder="identity-encoder", disk=None)
    disk = _fit(str(path), "mean-shift", encoder="identity-encoder", disk={"exact": True})
    assert disk.metadata["training"]["from_disk"] and "read_whole" not in disk.metadata["training"]
    assert disk.encoder.input_features == memory.encoder.input_features
    np.testing.assert_allclose(disk.manipulator.means.numpy(), memory.manipulator.means.numpy(), atol=1e-5)
    np.testing.assert_array_equal(disk.manipulator.counts.numpy(), memory.manipulator.counts.numpy())
    np.testing.assert_allclose(_predict(disk, control), _predict(memory, control), atol=1e-5)


def test_identity_encoder_is_refused_when_every_code_would_be_held(store):
    _, path, _ = store
    with pytest.raises(DataError, match="identity encoder.*manipulator='mean-shift'"):
        _fit(str(path), "nearest-target", encoder="identity-encoder")
    with pytest.raises(DataError, match="identity encoder.*mlp-decoder"):
        _fit(str(path), "mean-shift", encoder="identity-encoder", decoder={"name": "mlp-decoder", "max_epochs": 1})
