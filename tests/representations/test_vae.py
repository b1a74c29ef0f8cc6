"""The scGen VAE: learning, artifacts, determinism, resumable training, count likelihoods, errors."""

import math

import numpy as np
import pytest
import torch

from virtualcell.datasets import ground_truth_mean, simulate_perturbation
from virtualcell.instruments.decoders.vae import VAEDecoder
from virtualcell.pipelines import PerturbationPipeline
from virtualcell.representations.vae import VAEEncoder
from virtualcell.testing import tiny_expression

SMALL = {"n_hidden": 32, "n_latent": 6, "batch_size": 32, "lr": 3e-3}
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _data(counts: bool = False):
    adata = simulate_perturbation(n_cells_per_group=25, n_genes=40, n_cell_types=3, counts=counts, seed=1)
    return torch.from_numpy(adata.X), list(adata.var_names)


def _fit(x, genes, seed=0, **kwargs):
    return VAEEncoder(**{**SMALL, "max_epochs": 3, **kwargs}).fit(x, genes, seed=seed, progress=False)


def _weights(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_reconstruction_loss_decreases():
    x, genes = _data()
    encoder = _fit(x, genes, max_epochs=25, patience=None)
    constant = 0.5 * math.log(2 * math.pi) * x.shape[1]  # of the unit-variance Gaussian NLL
    squared_error = [e["reconstruction"] - constant for e in encoder.history.epochs]
    assert squared_error[-1] < 0.7 * squared_error[0]
    z = encoder.encode(x)
    assert z.shape == (x.shape[0], 6) and torch.isfinite(z).all()
    decoded = encoder.paired_decoder().decode(z)
    assert decoded.shape == x.shape and torch.isfinite(decoded).all()
    # the decoded means explain most of the variance of the data
    assert float(((decoded - x) ** 2).mean()) < 0.8 * float(((x - x.mean(0)) ** 2).mean())


def test_save_load_encoder_and_decoder(tmp_path):
    x, genes = _data()
    encoder = _fit(x, genes)
    decoder = encoder.paired_decoder()
    z = encoder.encode(x)
    encoder.save(tmp_path / "enc")
    decoder.save(tmp_path / "dec")
    enc2, dec2 = VAEEncoder.load(tmp_path / "enc"), VAEDecoder.load(tmp_path / "dec")
    torch.testing.assert_close(enc2.encode(x), z, atol=0, rtol=0)
    torch.testing.assert_close(dec2.decode(z), decoder.decode(z), atol=0, rtol=0)
    assert enc2.input_features == genes and dec2.output_features == genes
    assert dec2.state_dict().keys() == {f"net.{k}" for k in encoder.vae.decoder.state_dict()}  # the decoder half only


def test_paired_decoder_owns_its_weights():
    x, genes = _data()
    encoder = _fit(x, genes)
    decoder = encoder.paired_decoder()
    z = encoder.encode(x)
    before = decoder.decode(z)
    with torch.no_grad():
        for p in encoder.vae.decoder.parameters():
            p.add_(1.0)
    torch.testing.assert_close(decoder.decode(z), before, atol=0, rtol=0)


def test_same_seed_same_weights_other_seed_other_weights():
    x, genes = _data()
    a, b, c = _fit(x, genes, seed=4), _fit(x, genes, seed=4), _fit(x, genes, seed=5)
    for key, value in _weights(a.vae).items():
        torch.testing.assert_close(b.vae.state_dict()[key], value, atol=0, rtol=0)
    assert not torch.equal(a.encode(x), c.encode(x))


def test_fit_leaves_global_rng_alone():
    x, genes = _data()
    state = torch.get_rng_state()
    _fit(x, genes, max_epochs=1)
    assert torch.equal(torch.get_rng_state(), state)


def test_resume_from_checkpoint_matches_uninterrupted_run(tmp_path):
    x, genes = _data()
    full = _fit(x, genes, seed=2, max_epochs=6, patience=2)
    _fit(x, genes, seed=2, max_epochs=3, patience=2, checkpoint_dir=str(tmp_path))  # "interrupted" after 3 epochs
    resumed = _fit(x, genes, seed=2, max_epochs=6, patience=2, checkpoint_dir=str(tmp_path))
    assert len(resumed.history.epochs) == len(full.history.epochs)
    for key, value in _weights(full.vae).items():
        torch.testing.assert_close(resumed.vae.state_dict()[key], value, atol=0, rtol=0)


def test_mixed_precision_on_cpu_trains_deterministically():
    x, genes = _data()
    a, b = _fit(x, genes, mixed_precision=True), _fit(x, genes, mixed_precision=True)
    torch.testing.assert_close(a.encode(x), b.encode(x), atol=0, rtol=0)
    assert np.isfinite([e["loss"] for e in a.history.epochs]).all()


@pytest.mark.parametrize("likelihood", ["nb", "zinb"])
def test_count_likelihoods_learn_and_decode_expected_counts(likelihood):
    x, genes = _data(counts=True)
    encoder = _fit(x, genes, likelihood=likelihood, max_epochs=15, patience=None, lr=1e-2)
    losses = [e["reconstruction"] for e in encoder.history.epochs]
    assert losses[-1] < losses[0]
    decoded = encoder.paired_decoder().decode(encoder.encode(x))
    assert decoded.shape == x.shape and (decoded >= 0).all()
    # expected counts at the mean library size: totals match the data's mean library size
    library = float(x.sum(1).mean())  # the training cells' mean (90 % of the cells): close to it
    if likelihood == "nb":
        torch.testing.assert_close(decoded.sum(1), torch.full((x.shape[0],), library), rtol=0.05, atol=0)
    else:
        assert float(decoded.sum(1).mean()) <= library * 1.05
    # genes with higher mean counts are decoded higher
    assert np.corrcoef(decoded.mean(0).numpy(), x.mean(0).numpy())[0, 1] > 0.8


def test_count_vae_in_a_pipeline_on_raw_counts(tmp_path):
    adata = simulate_perturbation(n_cells_per_group=30, n_genes=40, counts=True, seed=0)
    pipe = PerturbationPipeline(encoder={"name": "vae", "likelihood": "zinb", **SMALL, "max_epochs": 3},
                                manipulator="latent-arithmetic", preprocess="counts")
    pipe.fit(adata, context_key="cell_type", progress=False)
    pred = pipe.predict(adata[:5], target="stimulated")
    assert pred.shape == (5, 40) and (np.asarray(pred.X) >= 0).all()
    pipe.save(tmp_path / "pipe")
    loaded = PerturbationPipeline.load(tmp_path / "pipe")
    np.testing.assert_allclose(loaded.predict(adata[:5], target="stimulated").X, pred.X, atol=1e-5)


def test_vae_with_latent_arithmetic_recovers_a_held_out_response():
    # 3 cell types x 2 conditions x 33 cells = 198 cells, 50 genes
    adata = simulate_perturbation(n_cells_per_group=33, n_genes=50, n_cell_types=3, effect_size=2.0, seed=0)
    held_out = (adata.obs["cell_type"] == "type_0").to_numpy()
    stim = (adata.obs["condition"] == "stimulated").to_numpy()
    pipe = PerturbationPipeline(encoder={"name": "vae", "n_hidden": 64, "n_layers": 1, "n_latent": 10,
                                         "max_epochs": 100, "batch_size": 32, "lr": 1e-3},
                                manipulator="latent-arithmetic")
    pipe.fit(adata[~(held_out & stim)].copy(), context_key="cell_type", seed=0, progress=False)
    control = adata[held_out & ~stim].copy()
    pred = pipe.predict(control, target="stimulated")
    truth = ground_truth_mean(adata, "type_0", "stimulated") - ground_truth_mean(adata, "type_0", "control")
    predicted = np.asarray(pred.X).mean(0) - np.asarray(control.X).mean(0)
    assert np.corrcoef(predicted, truth)[0, 1] > 0.8


def test_clear_errors():
    x, genes = tiny_expression()
    with pytest.raises(ValueError, match="likelihood must be one of"):
        VAEEncoder(likelihood="poisson")
    with pytest.raises(ValueError, match="non-negative counts"):
        VAEEncoder(**SMALL, likelihood="nb").fit(x - 1, genes, progress=False)
    with pytest.raises(ValueError, match="output_activation='identity'"):
        VAEEncoder(**SMALL).fit(x - 1, genes, progress=False)
    with pytest.raises(ValueError, match="feature names"):
        VAEEncoder(**SMALL).fit(x, genes[:-1], progress=False)
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        VAEEncoder(**SMALL).fit(bad, genes, progress=False)
    encoder = VAEEncoder(**SMALL, max_epochs=1).fit(x, genes, progress=False)
    with pytest.raises(ValueError, match="fitted on 30 genes"):
        encoder.encode(x[:, :10])
    with pytest.raises(ValueError, match=r"expects z \[n, 6\]"):
        encoder.paired_decoder().decode(torch.zeros(3, 2))


def test_identity_output_reconstructs_scaled_data():
    x, genes = tiny_expression()
    scaled = (x - x.mean(0)) / x.std(0)
    encoder = VAEEncoder(**SMALL, output_activation="identity", max_epochs=2).fit(scaled, genes, progress=False)
    decoded = encoder.paired_decoder().decode(encoder.encode(scaled))
    assert (decoded < 0).any()


@needs_cuda
@pytest.mark.parametrize("mixed_precision", [False, True])
def test_cuda_training_and_inference(mixed_precision):
    x, genes = _data()
    a = _fit(x, genes, device="cuda", mixed_precision=mixed_precision)
    b = _fit(x, genes, device="cuda", mixed_precision=mixed_precision)
    assert a.device.type == "cuda"
    z = a.encode(x.cuda())
    assert z.device.type == "cuda" and torch.isfinite(z).all()
    torch.testing.assert_close(a.encode(x), b.encode(x))
    decoded = a.paired_decoder().decode(z)
    assert decoded.shape == x.shape and decoded.device.type == "cuda"
    torch.testing.assert_close(a.to("cpu").encode(x), z.cpu(), atol=1e-4, rtol=1e-4)


def test_training_runs_where_the_data_is_unless_a_device_is_named():
    x, genes = _data()
    assert _fit(x, genes, max_epochs=1).device.type == "cpu"
    assert VAEEncoder().config["device"] is None


@needs_cuda
def test_a_cuda_pipeline_trains_its_vae_on_the_gpu():
    adata = simulate_perturbation(n_cells_per_group=25, n_genes=40, n_cell_types=3, seed=1)
    held_out = (adata.obs.cell_type == "type_0") & (adata.obs.condition == "stimulated")
    pipeline = PerturbationPipeline(encoder={"name": "vae", **SMALL, "max_epochs": 2},
                                    manipulator="latent-arithmetic", device="cuda")
    pipeline.fit(adata[~held_out].copy(), condition_key="condition", control="control", context_key="cell_type",
                 seed=0, progress=False)
    assert pipeline.encoder.device.type == "cuda"
    predicted = pipeline.predict(adata[(adata.obs.cell_type == "type_0") & (adata.obs.condition == "control")],
                                 target="stimulated")
    assert np.isfinite(predicted.X).all()
