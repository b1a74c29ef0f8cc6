"""mlp-decoder: expression from any representation (Gaussian or negative binomial)."""

import pytest
import torch

from virtualcell.instruments.decoders.mlp import MLPDecoder
from virtualcell.testing.synthetic import tiny_expression


def _latent_data(seed=0, n=160, genes=30, d=4):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g)
    weights = torch.randn(d, genes, generator=g)
    return z, weights


def test_gaussian_decoder_learns_a_map_better_than_the_mean(one_torch_thread):
    z, weights = _latent_data()
    x = torch.nn.functional.softplus(z @ weights)                      # non-negative, non-linear in z
    decoder = MLPDecoder(n_hidden=64, max_epochs=60, lr=3e-3).fit(z[:120], x[:120], [f"g{i}" for i in range(30)],
                                                                  progress=False)
    held_out = ((decoder.decode(z[120:]) - x[120:]) ** 2).mean()
    baseline = ((x[:120].mean(0) - x[120:]) ** 2).mean()
    assert held_out < 0.3 * baseline
    assert decoder.output_features[0] == "g0" and decoder.training_summary["epochs"] == 60


def test_negative_binomial_decoder_returns_expected_counts(one_torch_thread):
    z, weights = _latent_data(seed=1)
    g = torch.Generator().manual_seed(2)
    rates = torch.exp(0.5 * z @ weights).clamp(max=50)
    counts = torch.poisson(rates, generator=g)
    decoder = MLPDecoder(likelihood="nb", n_hidden=32, max_epochs=40, lr=3e-3).fit(
        z, counts, [f"g{i}" for i in range(30)], progress=False)
    out = decoder.decode(z)
    assert (out >= 0).all()
    torch.testing.assert_close(out.sum(1), torch.full((160,), float(counts.sum(1).mean())), rtol=1e-4, atol=1e-2)
    assert torch.corrcoef(torch.stack([out.log1p().flatten(), counts.log1p().flatten()]))[0, 1] > 0.6


def test_bad_inputs_are_named():
    x, genes = tiny_expression()
    with pytest.raises(ValueError, match="likelihood must be one of"):
        MLPDecoder(likelihood="poisson")
    with pytest.raises(ValueError, match="negative"):
        MLPDecoder(likelihood="nb", max_epochs=1).fit(x[:, :4], x - 1, genes, progress=False)
    decoder = MLPDecoder(max_epochs=1, n_hidden=8).fit(x[:, :4], x, genes, progress=False)
    with pytest.raises(ValueError, match="4 dims"):
        decoder.decode(x[:, :5])
