"""The conditional diffusion manipulator (registered ``diffusion``), its denoiser and its training step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from virtualcell.component import Condition
from virtualcell.nn.denoisers import FeatureGroupTransformerDenoiser, ResidualMLPDenoiser
from virtualcell.instruments.manipulators.diffusion import DiffusionManipulator
from virtualcell.train.diffusion import DenoisingData, NoisePredictionStep, train_denoiser

# diffusers' DPM-Solver builds its sigmas with a numpy call that newer numpy flags; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

TINY = {"hidden": 32, "depth": 2, "cond_dim": 16, "max_epochs": 6, "batch_size": 32, "patience": None,
        "num_inference_steps": 10, "sampling_progress": False}
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test of this module runs on one torch thread (tests/conftest.py)."""


def two_types(n_per_group: int = 40, seed: int = 0):
    """z [n, 4] for 2 cell types x (control, stimulated); each cell has an identity offset ``u``.

    Type A responds along feature 0, type B along feature 1 (a non-additive response).
    """
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0, 3.0, 0.0], [0.0, 0.0, -3.0, 0.0]])
    responses = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]])
    zs, conds, ctxs, offsets = [], [], [], []
    for context in (0, 1):
        for condition in (0, 1):
            u = torch.randn(n_per_group, 4, generator=g) * torch.tensor([0.3, 0.3, 0.3, 1.0])
            zs.append(centres[context] + condition * responses[context] + u)
            conds.append(torch.full((n_per_group,), condition))
            ctxs.append(torch.full((n_per_group,), context))
            offsets.append(u)
    return torch.cat(zs), Condition(torch.cat(conds), None, torch.cat(ctxs)), torch.cat(offsets), centres, responses


def control_query(labels: Condition) -> tuple[torch.Tensor, Condition]:
    rows = labels.target == 0
    return rows, Condition(torch.ones(int(rows.sum()), dtype=torch.long), labels.target[rows], labels.context[rows])


# -- denoiser -------------------------------------------------------------------------------------
def test_denoiser_shapes_and_zero_init():
    net = ResidualMLPDenoiser(5, n_conditions=3, n_contexts=2, n_covariates=2, hidden=16, depth=2, cond_dim=8)
    x = torch.randn(7, 5)
    t = torch.randint(0, 1000, (7,))
    out = net(x, t, torch.tensor([0, 1, 2, 3, 0, 1, 2]), torch.tensor([0, 1, 2, 0, 1, 2, 0]), torch.randn(7, 2))
    assert out.shape == (7, 5)
    assert torch.all(out == 0)  # zero-initialised head: an untrained denoiser predicts no noise
    assert net.null_condition == 3 and net.null_context == 2
    masks = net.draw_dropout_masks(4, torch.Generator().manual_seed(0))
    assert len(masks) == 2 and masks[0].shape == (4, 64)


def test_dropout_masks_are_used_only_in_eval_with_masks():
    net = ResidualMLPDenoiser(3, n_conditions=2, hidden=8, depth=1, cond_dim=4, dropout=0.5)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.5)
    net.eval()
    x, t, c = torch.randn(4, 3), torch.full((4,), 10), torch.zeros(4, dtype=torch.long)
    plain = net(x, t, c)
    torch.testing.assert_close(net(x, t, c), plain)
    masks = net.draw_dropout_masks(1, torch.Generator().manual_seed(1))
    masked = net(x, t, c, dropout_masks=[m.expand(4, -1) for m in masks])
    assert not torch.allclose(masked, plain)


def test_transformer_denoiser_shapes_zero_init_and_monte_carlo_masks():
    net = FeatureGroupTransformerDenoiser(7, n_conditions=3, n_contexts=2, n_covariates=1, hidden=16, depth=2,
                                          heads=2, n_tokens=3, cond_dim=8, dropout=0.5)
    x, t = torch.randn(5, 7), torch.randint(0, 1000, (5,))
    condition, context = torch.tensor([0, 1, 2, 3, 0]), torch.tensor([0, 1, 2, 0, 1])
    out = net(x, t, condition, context, torch.randn(5, 1))
    assert out.shape == (5, 7) and torch.all(out == 0)       # 7 features in 3 groups of 3 (padded), zero head
    assert net.null_condition == 3 and net.null_context == 2
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    net.eval()
    plain = net(x, t, condition, context)
    masks = net.draw_dropout_masks(2, torch.Generator().manual_seed(0))
    assert len(masks) == 2 and masks[0].shape == (2, 3 * 16)
    first = net(x, t, condition, context, dropout_masks=[m[0].expand(5, -1) for m in masks])
    second = net(x, t, condition, context, dropout_masks=[m[1].expand(5, -1) for m in masks])
    assert not torch.allclose(first, plain) and not torch.allclose(first, second)
    with pytest.raises(ValueError, match="multiple of heads"):
        FeatureGroupTransformerDenoiser(4, 2, hidden=10, heads=4)
    with pytest.raises(ValueError, match="n_tokens"):
        FeatureGroupTransformerDenoiser(4, 2, hidden=8, heads=2, n_tokens=5)


# -- training -------------------------------------------------------------------------------------
def _tiny_data(n=64, d=3):
    g = torch.Generator().manual_seed(0)
    condition = torch.arange(n) % 2
    x = torch.randn(n, d, generator=g) * 0.3 + condition[:, None] * 2.0 - 1.0
    return DenoisingData(x, condition)


def _scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(beta_schedule="scaled_linear", clip_sample=False)


def test_noise_prediction_step_learns():
    data = _tiny_data()
    torch.manual_seed(0)
    net = ResidualMLPDenoiser(3, n_conditions=2, hidden=32, depth=2, cond_dim=16, dropout=0.0)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    step = NoisePredictionStep(net, optimizer, _scheduler(), data, generator=torch.Generator().manual_seed(0))
    rows = torch.arange(len(data))
    first = float(np.mean([float(step(rows)["loss"]) for _ in range(5)]))
    for _ in range(150):
        step(rows)
    last = float(np.mean([float(step(rows)["loss"]) for _ in range(5)]))
    assert last < 0.8 * first


def test_training_resumes_from_a_checkpoint_with_the_same_numbers(tmp_path):
    data = _tiny_data()

    def run(max_epochs, checkpoint_dir):
        torch.manual_seed(0)
        net = ResidualMLPDenoiser(3, n_conditions=2, hidden=16, depth=1, cond_dim=8)
        train_denoiser(net, _scheduler(), data, max_epochs=max_epochs, batch_size=16, patience=None, seed=3,
                       checkpoint_dir=checkpoint_dir, progress=False)
        return net.state_dict()

    straight = run(4, None)
    run(2, tmp_path / "ckpt")              # interrupted after 2 epochs ...
    resumed = run(4, tmp_path / "ckpt")    # ... and resumed to 4
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], atol=0, rtol=0)


# -- manipulator ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted() -> tuple[DiffusionManipulator, tuple]:
    data = two_types(n_per_group=20)
    settings = {**TINY, "max_epochs": 200, "lr": 5e-3, "batch_size": 80, "validation_fraction": 0.0,
                "arithmetic_prior": 1.0, "strength": 0.6, "guidance_scale": 1.0, "compose": 0.0}
    model = DiffusionManipulator(**settings).fit(data[0], data[1], seed=0, progress=False)
    return model, data


def test_counterfactual_keeps_each_cells_identity(fitted):
    model, (z, labels, offsets, centres, responses) = fitted
    rows, query = control_query(labels)
    moved = model.manipulate(z[rows], query)
    identity = offsets[rows][:, 3]          # the within-type axis the condition does not touch
    kept = torch.corrcoef(torch.stack([identity, moved[:, 3]]))[0, 1]
    assert kept > 0.9
    generated = model.with_sampling(inversion="noise", strength=1.0).manipulate(
        z[rows], query, generator=torch.Generator().manual_seed(0))
    assert torch.corrcoef(torch.stack([identity, generated[:, 3]]))[0, 1] < kept - 0.3


def test_the_default_learns_the_whole_response_without_the_prior():
    z, labels, offsets, centres, responses = two_types(n_per_group=20)
    model = DiffusionManipulator(**{**TINY, "max_epochs": 100, "lr": 5e-3, "batch_size": 80,
                                    "validation_fraction": 0.0}).fit(z, labels, progress=False)
    assert model.config["arithmetic_prior"] == 0 and model.condition_means.numel() == 0
    rows, query = control_query(labels)
    moved = model.manipulate(z[rows], query)
    truth = centres[query.context] + responses[query.context] + offsets[rows]
    assert (moved - truth)[:, :2].pow(2).mean() < (z[rows] - truth)[:, :2].pow(2).mean()  # it moves the right way


def test_strength_zero_is_latent_arithmetic(fitted):
    from virtualcell.instruments.manipulators.latent_arithmetic import LatentArithmeticManipulator

    model, (z, labels, *_rest) = fitted
    rows, query = control_query(labels)
    arithmetic = LatentArithmeticManipulator().fit(z, labels, seed=0, progress=False)
    torch.testing.assert_close(model.with_sampling(strength=0.0).manipulate(z[rows], query),
                               arithmetic.manipulate(z[rows], query), atol=1e-5, rtol=0)


def test_samples_are_seeded_and_single_sample_is_the_central_prediction(fitted):
    model, (z, labels, *_rest) = fitted
    rows, query = control_query(labels)
    gen = lambda seed: torch.Generator().manual_seed(seed)
    a = model.manipulate(z[rows], query, n_samples=5, generator=gen(1))
    b = model.manipulate(z[rows], query, n_samples=5, generator=gen(1))
    c = model.manipulate(z[rows], query, n_samples=5, generator=gen(2))
    assert a.shape == (5, int(rows.sum()), 4)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.allclose(a, c)
    # the per-sample population means differ: the spread the calibration metric reads
    assert a.mean(1).std(0).max() > 1e-3
    # deterministic DDIM (eta=0): the single-sample prediction does not depend on the seed
    torch.testing.assert_close(model.manipulate(z[rows], query, generator=gen(1)),
                               model.manipulate(z[rows], query, generator=gen(2)), atol=0, rtol=0)
    noisy = model.with_sampling(eta=1.0)
    assert not torch.allclose(noisy.manipulate(z[rows], query, generator=gen(1)),
                              noisy.manipulate(z[rows], query, generator=gen(2)))


def test_same_seed_gives_the_same_samples_on_cpu_from_fit_to_sampling():
    """Two independent fits with one seed, sampled with one seed: bit-identical samples on CPU."""
    z, labels, *_ = two_types(n_per_group=10)
    rows, query = control_query(labels)

    def run(fit_seed: int, sample_seed: int) -> torch.Tensor:
        model = DiffusionManipulator(**{**TINY, "max_epochs": 3, "eta": 0.5}).fit(z, labels, seed=fit_seed,
                                                                               progress=False)
        return model.manipulate(z[rows], query, n_samples=3, generator=torch.Generator().manual_seed(sample_seed))

    first = run(0, 7)
    torch.testing.assert_close(run(0, 7), first, atol=0, rtol=0)
    assert not torch.allclose(run(1, 7), first)   # another training seed: other weights
    assert not torch.allclose(run(0, 8), first)   # another sampling seed: other draws


@pytest.mark.parametrize("sampler", ["ddim", "dpm-solver++", "sde-dpm-solver++", "ddpm"])
def test_every_sampler_runs_and_agrees_roughly(fitted, sampler):
    model, (z, labels, *_rest) = fitted
    rows, query = control_query(labels)
    reference = model.manipulate(z[rows], query)
    swapped = model.with_sampling(sampler=sampler, num_inference_steps=20)
    assert type(swapped.sampling_scheduler()).__name__ in {"DDIMScheduler", "DPMSolverMultistepScheduler", "DDPMScheduler"}
    out = swapped.manipulate(z[rows], query, generator=torch.Generator().manual_seed(0))
    assert out.shape == reference.shape and torch.isfinite(out).all()
    assert (out.mean(0) - reference.mean(0)).abs().max() < 1.0


def test_guidance_and_composition_change_the_prediction(fitted):
    model, (z, labels, *_rest) = fitted
    rows, query = control_query(labels)
    plain = model.manipulate(z[rows], query)
    guided = model.with_sampling(guidance_scale=3.0).manipulate(z[rows], query)
    composed = model.with_sampling(guidance_scale=3.0, compose=1.0).manipulate(z[rows], query)
    assert guided.shape == plain.shape == composed.shape
    assert not torch.allclose(guided, plain) and not torch.allclose(composed, guided)
    # target == source: the inversion and the denoising use the same model, so the cell comes back
    same = Condition(query.source, query.source, query.context)
    assert (model.manipulate(z[rows], same) - z[rows]).abs().mean() < 0.1


def test_context_specific_responses_beat_the_additive_prior(fitted):
    model, (z, labels, offsets, centres, responses) = fitted
    rows, query = control_query(labels)
    truth = centres[query.context] + responses[query.context] + offsets[rows]
    diffusion_error = (model.with_sampling(strength=0.8).manipulate(z[rows], query) - truth)[:, :2].pow(2).mean()
    arithmetic_error = (model.with_sampling(strength=0.0).manipulate(z[rows], query) - truth)[:, :2].pow(2).mean()
    assert diffusion_error < 0.5 * arithmetic_error


def test_transformer_denoiser_learns_context_specific_responses_and_round_trips(tmp_path):
    z, labels, offsets, centres, responses = two_types(n_per_group=20)
    settings = {**TINY, "denoiser": "transformer", "hidden": 32, "heads": 4, "n_tokens": 2, "max_epochs": 200,
                "lr": 5e-3, "batch_size": 80, "validation_fraction": 0.0, "ema_decay": None, "arithmetic_prior": 1.0,
                "strength": 0.8, "guidance_scale": 1.0, "compose": 0.0}
    model = DiffusionManipulator(**settings).fit(z, labels, seed=0, progress=False)
    assert isinstance(model.denoiser, FeatureGroupTransformerDenoiser)
    rows, query = control_query(labels)
    truth = centres[query.context] + responses[query.context] + offsets[rows]
    diffusion_error = (model.manipulate(z[rows], query) - truth)[:, :2].pow(2).mean()
    arithmetic_error = (model.with_sampling(strength=0.0).manipulate(z[rows], query) - truth)[:, :2].pow(2).mean()
    assert diffusion_error < 0.5 * arithmetic_error
    model.save(tmp_path / "transformer")
    loaded = DiffusionManipulator.load(tmp_path / "transformer")
    assert isinstance(loaded.denoiser, FeatureGroupTransformerDenoiser)
    draws = [m.manipulate(z[rows], query, n_samples=2, generator=torch.Generator().manual_seed(3)) for m in (model, loaded)]
    torch.testing.assert_close(draws[0], draws[1], atol=0, rtol=0)
    with pytest.raises(ValueError, match="Unknown denoiser"):
        DiffusionManipulator(denoiser="unet")


def test_save_load_restores_the_nested_scheduler_configs(fitted, tmp_path):
    model, (z, labels, *_rest) = fitted
    model = model.with_sampling(sampler="dpm-solver++", sampler_config={"solver_order": 3})
    model.save(tmp_path / "diffusion")
    import json

    saved = json.loads((tmp_path / "diffusion" / "config.json").read_text())
    assert saved["state"]["train_scheduler"]["_class_name"] == "DDPMScheduler"
    assert saved["state"]["sampling_scheduler"]["solver_order"] == 3
    loaded = DiffusionManipulator.load(tmp_path / "diffusion")
    assert loaded.sampling_scheduler().config.solver_order == 3
    assert dict(loaded.training_scheduler().config) == dict(model.training_scheduler().config)
    rows, query = control_query(labels)
    torch.testing.assert_close(loaded.manipulate(z[rows], query, n_samples=3, generator=torch.Generator().manual_seed(4)),
                               model.manipulate(z[rows], query, n_samples=3, generator=torch.Generator().manual_seed(4)),
                               atol=1e-5, rtol=0)


def test_covariates_are_optional_at_prediction():
    z, labels, *_ = two_types(n_per_group=20)
    dose = labels.target.float() * 10
    labels = Condition(labels.target, None, labels.context, {"dose": dose})
    model = DiffusionManipulator(**TINY).fit(z, labels, progress=False)
    rows, query = control_query(labels)
    with_dose = Condition(query.target, query.source, query.context, {"dose": torch.full((int(rows.sum()),), 10.0)})
    a = model.manipulate(z[rows], with_dose)
    b = model.manipulate(z[rows], query)   # dose unknown: the covariate embedding's "unknown" state
    assert a.shape == b.shape and torch.isfinite(b).all()
    assert model.fitted_state()["covariates"] == ["dose"]


def test_works_without_context_labels_and_in_gene_space_like_data():
    z, labels, *_ = two_types(n_per_group=20)
    z = z.abs() * 3  # non-negative, unequal scales, like expression
    labels = Condition(labels.target)
    model = DiffusionManipulator(**TINY).fit(z, labels, progress=False)
    query = Condition(torch.ones(10, dtype=torch.long), torch.zeros(10, dtype=torch.long))
    out = model.manipulate(z[:10], query, n_samples=3, generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 10, 4) and torch.isfinite(out).all()
    assert model.denoiser.context is None


def test_artifacts_saved_with_the_retired_latent_context_effect_still_load(fitted, tmp_path):
    """Older diffusion artifacts hold ``context_effect_scale`` and ``group_means``/``group_counts`` buffers."""
    from pathlib import Path

    from virtualcell.registry.artifact import _assign_tensors

    model, (z, labels, *_rest) = fitted
    clone = DiffusionManipulator.from_config({**model.config, "context_effect_scale": 1.0})
    assert "context_effect_scale" not in clone.config
    clone.load_fitted_state(model.fitted_state())
    _assign_tensors(clone, {**model.state_dict(), "group_means": torch.zeros(2, 2, 4),
                            "group_counts": torch.zeros(2, 2)}, Path("old-artifact"))
    clone.features, clone.is_fitted = list(model.features or []), True
    rows, query = control_query(labels)
    torch.testing.assert_close(clone.eval().manipulate(z[rows], query), model.manipulate(z[rows], query))
    with pytest.raises(ValueError, match="with_sampling"):
        model.with_sampling(context_effect_scale=2.0)


def test_errors_name_the_problem(fitted):
    model, (z, labels, *_rest) = fitted
    with pytest.raises(ValueError, match="sampler"):
        DiffusionManipulator(sampler="euler")
    with pytest.raises(ValueError, match="strength"):
        DiffusionManipulator(strength=1.5)
    with pytest.raises(ValueError, match="compose"):
        DiffusionManipulator(compose=2.0)
    with pytest.raises(ValueError, match="arithmetic_prior"):
        DiffusionManipulator(arithmetic_prior=1.5)
    with pytest.raises(ValueError, match="DDPMScheduler"):
        DiffusionManipulator(scheduler={"not_a_key": 1})
    with pytest.raises(ValueError, match="sampling only"):
        model.with_sampling(hidden=64)
    with pytest.raises(ValueError, match="context"):
        model.manipulate(z[:2], Condition(torch.ones(2, dtype=torch.long), torch.zeros(2, dtype=torch.long),
                                          torch.tensor([0, 7])))
    with pytest.raises(ValueError, match="source"):
        model.manipulate(z[:2], Condition(torch.ones(2, dtype=torch.long)))


def test_pipeline_writes_mean_and_uncertainty_layers():
    import anndata as ad
    import pandas as pd

    from virtualcell.pipelines.perturbation import PerturbationPipeline

    z, labels, *_ = two_types(n_per_group=20)
    x = (z - z.min()).numpy()
    obs = pd.DataFrame({"condition": np.where(labels.target.numpy() == 0, "control", "stim"),
                        "cell_type": np.where(labels.context.numpy() == 0, "A", "B")},
                       index=[f"c{i}" for i in range(len(x))])
    adata = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=[f"g{i}" for i in range(x.shape[1])]))
    pipe = PerturbationPipeline(encoder="identity-encoder", manipulator={"name": "diffusion", **TINY})
    pipe.fit(adata, context_key="cell_type", progress=False)
    source = adata[adata.obs["condition"] == "control"]
    out = pipe.predict(source, target="stim", n_samples=4, seed=0)
    assert {"variance", "q05", "q95"} <= set(out.layers)
    assert (out.layers["q05"] <= out.X + 1e-6).all() and (out.X <= out.layers["q95"] + 1e-6).all()
    again = pipe.predict(source, target="stim", n_samples=4, seed=0)
    np.testing.assert_array_equal(out.X, again.X)


def test_bf16_mixed_precision_on_cpu_runs():
    z, labels, *_ = two_types(n_per_group=10)
    model = DiffusionManipulator(**{**TINY, "max_epochs": 2, "mixed_precision": True}).fit(z, labels, progress=False)
    rows, query = control_query(labels)
    assert torch.isfinite(model.manipulate(z[rows], query)).all()


@cuda
def test_gpu_mixed_precision_matches_cpu_draws():
    z, labels, *_ = two_types(n_per_group=20)
    model = DiffusionManipulator(**TINY).fit(z, labels, progress=False)
    rows, query = control_query(labels)
    cpu = model.manipulate(z[rows], query, n_samples=3, generator=torch.Generator().manual_seed(0))
    on_gpu = model.to("cuda").manipulate(z[rows].cuda(), query.to("cuda"), n_samples=3,
                                         generator=torch.Generator("cuda").manual_seed(0)).cpu()
    torch.testing.assert_close(on_gpu, cpu, atol=1e-3, rtol=1e-3)
    fast = DiffusionManipulator(**{**TINY, "mixed_precision": True}).to("cuda")
    fast.fit(z.cuda(), labels.to("cuda"), progress=False)
    assert torch.isfinite(fast.manipulate(z[rows].cuda(), query.to("cuda"), n_samples=2)).all()
