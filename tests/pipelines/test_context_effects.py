"""The gene-space random effect of an unseen context's response (virtualcell.pipelines.context_effects)."""

import json

import numpy as np
import pytest
import torch

import virtualcell as vc
from virtualcell.datasets import simulate_perturbation
from virtualcell.pipelines.context_effects import context_effects, sample_context_effects
from virtualcell.pipelines.perturbation import RESPONSE_MEANS_FILE
from virtualcell.registry import TamperedArtifactError


@pytest.fixture(scope="module")
def fitted():
    """PCA + latent arithmetic (deterministic) fitted on 4 cell types without type_0's stimulated cells."""
    adata = simulate_perturbation(n_cells_per_group=40, n_genes=30, n_cell_types=4, seed=0)
    held = (adata.obs["cell_type"] == "type_0").to_numpy()
    stim = (adata.obs["condition"] == "stimulated").to_numpy()
    pipe = vc.PerturbationPipeline(encoder={"name": "pca", "n_components": 10}, manipulator="latent-arithmetic").fit(
        adata[~(held & stim)].copy(), condition_key="condition", control="control", context_key="cell_type",
        progress=False)
    return pipe, adata[held & ~stim].copy(), adata[(adata.obs["cell_type"] == "type_1").to_numpy() & ~stim].copy()


def test_context_effects_follow_the_spread_of_the_contexts_responses():
    means = torch.zeros(4, 2, 3)
    means[:, 1] = torch.tensor([[1.0, 0, 0], [2.0, 0, 0], [3.0, 0, 0], [4.0, 0, 0]])   # responses along feature 0
    counts = torch.ones(4, 2) * 10
    draws = sample_context_effects(means, counts, 0, 1, 20000, torch.Generator().manual_seed(0))
    assert draws.shape == (20000, 3)
    assert draws[:, 1:].abs().max() == 0                 # no spread, no effect
    assert abs(float(draws[:, 0].mean())) < 0.05
    # Student t, 3 degrees of freedom: the central 90% is +-2.353 * sd * sqrt(1 + 1/K)
    q95 = float(draws[:, 0].quantile(0.95))
    expected = 2.353 * float(torch.tensor([1.0, 2, 3, 4]).std()) * (1 + 1 / 4) ** 0.5
    assert abs(q95 - expected) / expected < 0.1
    counts[1:, 1] = 0                                    # one context only: no information
    assert sample_context_effects(means, counts, 0, 1, 5, torch.Generator()).abs().max() == 0


def test_effects_only_for_cells_whose_contexts_response_was_not_observed():
    means = torch.randn(4, 2, 6, generator=torch.Generator().manual_seed(0))
    counts = torch.full((4, 2), 10.0)
    counts[0, 1] = 0                                     # context 0 was never seen stimulated
    source = torch.tensor([0, 0, 0, 0, 0, 1])
    target = torch.tensor([1, 1, 1, 1, 1, 1])
    context = torch.tensor([0, 0, 1, 2, -1, 0])          # -1: unknown to the fit; last cell: source == target
    effects = context_effects(means, counts, source, target, context, 7, torch.Generator().manual_seed(0))
    assert effects.shape == (7, 6, 6) and effects.dtype == torch.float32
    moved = effects.abs().sum((0, 2)) > 0
    assert moved.tolist() == [True, True, False, False, True, False]
    torch.testing.assert_close(effects[:, 0], effects[:, 1], atol=0, rtol=0)   # one draw per context and sample
    assert not torch.equal(effects[:, 0], effects[:, 4])                       # another context: another draw
    assert not torch.equal(effects[0, 0], effects[1, 0])                       # another sample: another draw
    unknown = context_effects(means, counts, source, target, None, 7, torch.Generator().manual_seed(0))
    assert (unknown.abs().sum((0, 2)) > 0).tolist() == [True] * 5 + [False]
    with pytest.raises(ValueError, match="one id per cell"):
        context_effects(means, counts, source[:2], target, None, 2, torch.Generator())


def test_fit_keeps_gene_space_means_per_context_and_condition(fitted):
    pipe, ctrl, _ = fitted
    means, counts = pipe.response_means
    assert means.shape == (4, 2, 30) and counts.shape == (4, 2)
    assert counts[0, 1] == 0 and (counts[1:] > 0).all()  # type_0's stimulated cells were held out
    np.testing.assert_allclose(means[0, 0].numpy(), ctrl.X.mean(0), rtol=1e-5, atol=1e-5)


def test_samples_are_seeded_and_scale_zero_or_one_sample_is_the_central_prediction(fitted):
    pipe, ctrl, _ = fitted
    central, _ = pipe.predict_samples(ctrl, target="stimulated")
    a, _ = pipe.predict_samples(ctrl, target="stimulated", n_samples=5, seed=3)
    b, _ = pipe.predict_samples(ctrl, target="stimulated", n_samples=5, seed=3)
    c, _ = pipe.predict_samples(ctrl, target="stimulated", n_samples=5, seed=4)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.equal(a, c) and not torch.equal(a[0], a[1])
    assert a.min() >= 0                                   # clamped after the effect is added
    off, _ = pipe.predict_samples(ctrl, target="stimulated", n_samples=5, seed=3, context_effect_scale=0.0)
    torch.testing.assert_close(off, central.expand_as(off), atol=0, rtol=0)   # latent arithmetic alone: no spread
    one, _ = pipe.predict_samples(ctrl, target="stimulated", n_samples=1, seed=3, context_effect_scale=2.0)
    torch.testing.assert_close(one, central, atol=0, rtol=0)
    wide, _ = pipe.predict_samples(ctrl, target="stimulated", n_samples=5, seed=3, context_effect_scale=2.0)
    assert wide.mean(1).std(0).mean() > a.mean(1).std(0).mean()
    predicted = pipe.predict(ctrl, target="stimulated", n_samples=5, seed=3, context_effect_scale=0.5)
    assert predicted.uns["virtualcell"]["call"]["context_effect_scale"] == 0.5
    with pytest.raises(ValueError, match="context_effect_scale"):
        pipe.predict_samples(ctrl, target="stimulated", n_samples=2, context_effect_scale=-1.0)


def test_observed_contexts_get_no_effect_and_unknown_ones_do(fitted):
    pipe, _, seen = fitted
    central, _ = pipe.predict_samples(seen, target="stimulated")
    samples, _ = pipe.predict_samples(seen, target="stimulated", n_samples=4, seed=0)
    torch.testing.assert_close(samples, central.expand_as(samples), atol=0, rtol=0)   # type_1's response was seen
    new = seen.copy()
    new.obs["cell_type"] = "type_new"
    samples, _ = pipe.predict_samples(new, target="stimulated", n_samples=4, seed=0)
    assert not torch.equal(samples[0], samples[1])


def test_save_load_keeps_the_means_and_the_samples(fitted, tmp_path):
    pipe, ctrl, _ = fitted
    expected, _ = pipe.predict_samples(ctrl, target="stimulated", n_samples=4, seed=1)
    pipe.save(tmp_path / "pipe")
    assert (tmp_path / "pipe" / RESPONSE_MEANS_FILE).exists()
    loaded = vc.PerturbationPipeline.load(tmp_path / "pipe")
    for saved, restored in zip(pipe.response_means, loaded.response_means):
        torch.testing.assert_close(saved, restored, atol=0, rtol=0)
    again, _ = loaded.predict_samples(ctrl, target="stimulated", n_samples=4, seed=1)
    torch.testing.assert_close(expected, again, atol=0, rtol=0)


def test_tampered_or_missing_means_file_is_refused(fitted, tmp_path):
    pipe, _, _ = fitted
    folder = pipe.save(tmp_path / "pipe")
    file = folder / RESPONSE_MEANS_FILE
    content = bytearray(file.read_bytes())
    content[-1] ^= 1
    file.write_bytes(bytes(content))
    with pytest.raises(TamperedArtifactError, match="sha256"):
        vc.PerturbationPipeline.load(folder)
    file.unlink()
    with pytest.raises(TamperedArtifactError, match="missing"):
        vc.PerturbationPipeline.load(folder)


def test_an_artifact_saved_without_the_means_still_loads(fitted, tmp_path):
    pipe, ctrl, _ = fitted
    kept = pipe.response_means
    try:
        pipe.response_means = None                       # as saved before the means were kept
        folder = pipe.save(tmp_path / "old")
    finally:
        pipe.response_means = kept
    assert "tensor_files" not in json.loads((folder / "pipeline.json").read_text())
    assert not (folder / RESPONSE_MEANS_FILE).exists()
    loaded = vc.PerturbationPipeline.load(folder)
    assert loaded.response_means is None
    central, _ = loaded.predict_samples(ctrl, target="stimulated")
    samples, _ = loaded.predict_samples(ctrl, target="stimulated", n_samples=3, seed=0)
    torch.testing.assert_close(samples, central.expand_as(samples), atol=0, rtol=0)   # no random effect


def test_fit_without_context_key_keeps_no_means():
    adata = simulate_perturbation(n_cells_per_group=20, n_genes=30, n_cell_types=2, seed=1)
    pipe = vc.PerturbationPipeline(encoder={"name": "pca", "n_components": 5}).fit(adata, progress=False)
    assert pipe.response_means is None


def test_sampled_predictions_keep_the_central_mean(fitted):
    """Issue #11: with the random effect clamped at 0, the mean of samples was biased (Kang CD4T R² 0.903 -> 0.866);
    X of predict(n_samples > 1) is now the mean of the manipulator's own samples (for a deterministic one, the
    n_samples=1 prediction up to float rounding), and the samples keep the spread."""
    pipe, ctrl, _ = fitted
    one = pipe.predict(ctrl, target="stimulated", seed=0)
    many = pipe.predict(ctrl, target="stimulated", n_samples=30, seed=0, context_effect_scale=3.0)
    np.testing.assert_allclose(many.X, one.X, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(many.obsm["X_virtualcell"], one.obsm["X_virtualcell"], rtol=1e-5, atol=1e-6)
    samples, _ = pipe.predict_samples(ctrl, target="stimulated", n_samples=30, seed=0, context_effect_scale=3.0)
    np.testing.assert_allclose(many.layers["sample_mean"], samples.mean(0).numpy(), rtol=1e-6)
    assert (many.layers["sample_mean"] > one.X + 1e-6).mean() > 0.2      # the clamp's bias that X no longer carries
    assert (many.layers["q05"] <= many.layers["q95"]).all() and many.layers["variance"].mean() > 0
