"""The cgan manipulator and its layers: FiLM, feature-group attention, condition embedding, rollout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from virtualcell.component import Condition
from virtualcell.datasets import ground_truth_mean, simulate_perturbation, simulate_time_course
from virtualcell.instruments.manipulators.cgan import CGANGenerator, CGANManipulator
from virtualcell.nn.layers import (CGANTrunk, ConditionEmbedding, FeatureGroups, FiLM,
                                                         GatedFeatureAttention, GroupDecoder)

TINY = dict(CGANManipulator.test_config)
FAST = {**TINY, "max_epochs": 8, "batch_size": 32, "hidden": 32, "token_dim": 16, "n_groups": 8,
        "lr_generator": 2e-3, "lr_discriminator": 2e-3}

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test of this module runs on one torch thread (tests/conftest.py)."""


# -- layers ---------------------------------------------------------------------------------------
def test_film_starts_as_identity_and_broadcasts_over_tokens():
    film = FiLM(4, 6)
    h, c = torch.randn(5, 3, 6), torch.randn(5, 4)
    torch.testing.assert_close(film(h, c), h)
    with torch.no_grad():
        film.to_scale_shift.bias.copy_(torch.cat([torch.full((6,), 1.0), torch.full((6,), 0.5)]))
    torch.testing.assert_close(film(h, c), 2 * h + 0.5)
    with pytest.raises(ValueError, match="features"):
        film(torch.randn(5, 7), c)


def test_feature_groups_pad_and_fold_standardisation():
    groups = FeatureGroups(10, 4, 3)
    assert (groups.n_groups, groups.group_size) == (4, 3)           # 10 features -> 4 groups of 3 (2 padded)
    x = torch.randn(7, 10)
    mean, std = torch.randn(10), torch.rand(10) + 0.5
    groups.feature_mean, groups.feature_std = mean, std
    padded = torch.nn.functional.pad((x - mean) / std, (0, 2)).reshape(7, 4, 3)
    expected = torch.einsum("ngk,gkt->ngt", padded, groups.weight) + groups.bias
    torch.testing.assert_close(groups(x), expected, atol=1e-5, rtol=1e-5)
    assert FeatureGroups(3, 64, 2).n_groups == 3                     # fewer features than groups


def test_group_decoder_maps_each_group_to_its_own_features():
    groups = FeatureGroups(10, 4, 3)
    decoder = GroupDecoder(groups, 2)
    with torch.no_grad():
        decoder.bias.copy_(torch.arange(4 * 6, dtype=torch.float32).reshape(4, 6))
    out = decoder(torch.zeros(2, 4, 3))
    assert out.shape == (2, 20)
    # group g holds [output 0 of its 3 features, output 1 of its 3 features]
    torch.testing.assert_close(out[0, :10], torch.tensor([0., 1, 2, 6, 7, 8, 12, 13, 14, 18]))
    torch.testing.assert_close(out[0, 10:], torch.tensor([3., 4, 5, 9, 10, 11, 15, 16, 17, 21]))


def test_gated_attention_mixes_groups_and_supports_double_backward():
    block = GatedFeatureAttention(8, n_heads=2, fused=False)
    tokens = torch.randn(4, 5, 8, requires_grad=True)
    fused = GatedFeatureAttention(8, n_heads=2, fused=True)
    fused.load_state_dict(block.state_dict())
    torch.testing.assert_close(fused(tokens), block(tokens), atol=1e-5, rtol=1e-5)
    out = block(tokens)
    assert out.shape == tokens.shape
    (grad,) = torch.autograd.grad(out.square().sum(), tokens, create_graph=True)
    grad.norm().backward()                                             # the gradient penalty needs this
    assert block.attention.qkv.weight.grad is not None
    changed = tokens.detach().clone()
    changed[0, 0, 0] += 1.0
    assert not torch.allclose(block(changed)[0, 1:], block(tokens.detach())[0, 1:])   # other groups see it
    with pytest.raises(ValueError, match="divisible"):
        GatedFeatureAttention(6, n_heads=4)


def test_condition_embedding_fills_missing_covariates_with_condition_means():
    embed = ConditionEmbedding(3, 4, ["dose"])
    condition = torch.tensor([0, 1, 1, 2, 2, 2])
    dose = torch.tensor([0.0, 1.0, 3.0, 5.0, 5.0, 5.0])
    embed.fit_covariates(condition, {"dose": dose})
    torch.testing.assert_close(embed.covariate_by_condition[:, 0], torch.tensor([0.0, 2.0, 5.0]))
    ids = torch.tensor([1, 2])
    torch.testing.assert_close(embed(ids), embed(ids, {"dose": torch.tensor([2.0, 5.0])}))
    assert not torch.allclose(embed(ids), embed(ids, {"dose": torch.tensor([0.0, 0.0])}))
    with pytest.raises(ValueError, match="dose"):
        embed.fit_covariates(condition, {})


def test_trunk_without_condition_has_no_film():
    trunk = CGANTrunk(12, cond_dim=0, n_groups=3, token_dim=4, n_heads=2, hidden=8, n_layers=2)
    assert trunk.input_film is None and trunk.films is None
    tokens, h = trunk(torch.randn(5, 12))
    assert tokens.shape == (5, 3, 4) and h.shape == (5, 8)


def test_generator_starts_as_identity_and_stays_non_negative():
    generator = CGANGenerator(20, 2, output="affine-relu", cond_dim=4, n_groups=4, token_dim=4, n_heads=2, hidden=8)
    x = torch.rand(6, 20) * 3
    source, target = torch.zeros(6, dtype=torch.long), torch.tensor([0, 1, 0, 1, 0, 1])
    torch.testing.assert_close(generator(x, source, target), x)
    with torch.no_grad():
        generator.location.weight.normal_()
        generator.scale_offset.weight.normal_()
    assert (generator(x, source, target) >= 0).all()
    torch.testing.assert_close(generator(x, source, source), x)      # the condition offsets cancel for a -> a
    affine = CGANGenerator(20, 2, output="affine", cond_dim=4, n_groups=4, token_dim=4, n_heads=2, hidden=8)
    with torch.no_grad():
        affine.location.weight[1].fill_(-5.0)
    assert (affine(x, source, target) < 0).any()


def test_condition_offsets_balance_contexts_and_skip_unpaired_ones():
    from virtualcell.nn.layers import condition_offsets

    # context 0: control 0, stimulated 2 (shift +2); context 1: control 10, stimulated 11 (+1);
    # context 2: control only (held out), far away at 100: it must not move the shift
    z = torch.tensor([[0.0], [0.0], [2.0], [10.0], [11.0], [11.0], [11.0], [100.0]])
    condition = torch.tensor([0, 0, 1, 0, 1, 1, 1, 0])
    context = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2])
    balanced = condition_offsets(z, condition, context, 3, balanced=True)
    assert balanced.shape == (3, 1)
    torch.testing.assert_close(balanced[1] - balanced[0], torch.tensor([1.5]))      # (2 + 1) / 2
    assert float(balanced[2]) == 0.0                                                  # no cells: no offset
    # cell weights: least squares weighs each context's shift by n_ctrl * n_stim / (n_ctrl + n_stim)
    weighted = condition_offsets(z, condition, context, 3)
    expected = (2 / 3 * 2.0 + 3 / 4 * 1.0) / (2 / 3 + 3 / 4)
    torch.testing.assert_close(weighted[1] - weighted[0], torch.tensor([expected]))
    pooled = condition_offsets(z, condition, None, 2)
    torch.testing.assert_close(pooled[1] - pooled[0], z[condition == 1].mean(0) - z[condition == 0].mean(0))


def test_paired_groups_and_offsets_ignore_a_few_stray_cells_of_a_condition():
    from virtualcell.nn.layers import condition_offsets, paired_groups

    counts = torch.tensor([[10, 10], [18, 2], [0, 5]])
    assert paired_groups(counts).tolist() == [[True, True], [True, True], [False, True]]
    assert paired_groups(counts, min_cells=3).tolist() == [[True, True], [True, False], [False, True]]
    # condition 1 is 17/45 of all cells; group 1's 2/20 is below half that share
    assert paired_groups(counts, min_share=0.5).tolist() == [[True, True], [True, False], [False, True]]
    # group 1 (a held-out type's controls at 100 with 2 strays of another type at 3) must not move the shift
    z = torch.tensor([[0.0]] * 10 + [[1.0]] * 10 + [[100.0]] * 18 + [[3.0]] * 2)
    condition = torch.tensor([0] * 10 + [1] * 10 + [0] * 18 + [1] * 2)
    group = torch.tensor([0] * 20 + [1] * 20)
    strict = condition_offsets(z, condition, group, 2, balanced=True, min_share=0.5)
    torch.testing.assert_close(strict[1] - strict[0], torch.tensor([1.0]))
    loose = condition_offsets(z, condition, group, 2, balanced=True)
    assert float(loose[1] - loose[0]) < -40                                            # (1 + (3 - 100)) / 2


def test_condition_offsets_recover_additive_shifts_when_contexts_hold_different_conditions():
    from virtualcell.nn.layers import condition_offsets

    # exactly additive means level[k] + shift[c]; each context holds a different subset of the
    # three conditions (a time course whose late points are missing for some cell types)
    level, shift = torch.tensor([0.0, 5.0, -3.0]), torch.tensor([0.0, 1.0, 4.0])
    design = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 1), (2, 2)]
    context = torch.tensor([k for k, _ in design for _ in range(3)])
    condition = torch.tensor([c for _, c in design for _ in range(3)])
    z = (level[context] + shift[condition])[:, None]
    offsets = condition_offsets(z, condition, context, 3, balanced=True)[:, 0]
    torch.testing.assert_close(offsets - offsets[0], shift, atol=1e-4, rtol=0)


def test_pseudo_contexts_find_cell_types_despite_the_condition_shift():
    from virtualcell.nn.layers import pseudo_contexts

    adata = simulate_perturbation(n_cells_per_group=30, n_genes=40, n_cell_types=3, effect_size=2.0, seed=3)
    x = torch.from_numpy(adata.X)
    condition = torch.tensor(adata.obs["condition"].cat.codes.to_numpy(), dtype=torch.long)
    clusters = pseudo_contexts(x, condition, 3, seed=0)
    types = adata.obs["cell_type"].cat.codes.to_numpy()
    for k in np.unique(clusters.numpy()):                  # every cluster is (nearly) one cell type, both conditions
        members = clusters.numpy() == k                    # (a few perturbed cells join a neighbour's centroid)
        assert np.bincount(types[members]).max() >= 0.9 * members.sum()
        assert len(np.unique(condition.numpy()[members])) == 2
    torch.testing.assert_close(pseudo_contexts(x, condition, 3, seed=0), clusters)


def test_pseudo_contexts_keep_a_strongly_responding_type_together():
    from virtualcell.nn.layers import pseudo_contexts

    adata = simulate_perturbation(n_cells_per_group=40, n_genes=40, n_cell_types=3, effect_size=1.0, seed=0)
    x = torch.from_numpy(adata.X).clone()
    condition = torch.tensor(adata.obs["condition"].cat.codes.to_numpy(), dtype=torch.long)
    types = adata.obs["cell_type"].cat.codes.to_numpy()
    x[torch.from_numpy(types == 0) & (condition == 1)] += 3.0 * (torch.arange(40) % 2 == 0).float()

    def shares(clusters: torch.Tensor) -> list[float]:          # perturbed share of each cluster
        return [float(condition[clusters == k].float().mean()) for k in torch.unique(clusters)]

    # k-means on every cell splits the strongly responding type into a control and a perturbed cluster
    assert min(shares(pseudo_contexts(x, condition, 3, seed=0, reference=None))) == 0.0
    # centroids of the controls, every cell to its nearest: each cluster pairs the two conditions
    clusters = pseudo_contexts(x, condition, 3, seed=0)
    assert all(0.3 <= share <= 0.7 for share in shares(clusters))
    assert len(np.unique(clusters.numpy()[types == 0])) == 1


# -- the manipulator ------------------------------------------------------------------------------
def _tiny_perturbation(seed: int = 0):
    adata = simulate_perturbation(n_cells_per_group=30, n_genes=40, n_cell_types=3, effect_size=1.5, seed=seed)
    x = torch.from_numpy(adata.X)
    labels = Condition(torch.tensor(adata.obs["condition"].cat.codes.to_numpy(), dtype=torch.long))
    return adata, x, labels


def test_output_mode_follows_the_data():
    _, x, labels = _tiny_perturbation()
    gene_space = CGANManipulator(**TINY).fit(x, labels, progress=False)
    assert gene_space.output_mode == "affine-relu"
    latent = CGANManipulator(**TINY).fit(x - x.mean(0), labels, progress=False)
    assert latent.output_mode == "affine"
    with pytest.raises(ValueError, match="output"):
        CGANManipulator(output="sigmoid")


def test_learns_a_response_without_context_labels():
    adata, x, labels = _tiny_perturbation()
    manipulator = CGANManipulator(**FAST).fit(x, labels, seed=0, progress=False)    # labels.context is None
    control = labels.target == 0
    moved = manipulator.manipulate(x[control], Condition.constant(int(control.sum()), 1, source=0))
    assert (moved >= 0).all()
    truth = np.mean([ground_truth_mean(adata, t, "stimulated") for t in adata.obs["cell_type"].cat.categories], 0)
    before = np.abs(x[control].mean(0).numpy() - truth).mean()
    after = np.abs(moved.mean(0).numpy() - truth).mean()
    assert after < 0.6 * before, (before, after)
    assert len(manipulator.history["epochs"]) >= 1


def test_save_load_keeps_covariates_and_leaves_the_discriminator_out(tmp_path):
    from safetensors.torch import load_file

    _, x, labels = _tiny_perturbation()
    dose = labels.target.float() * 2
    manipulator = CGANManipulator(**TINY).fit(x, Condition(labels.target, covariates={"dose": dose}), progress=False)
    assert manipulator.covariate_names == ["dose"]
    manipulator.save(tmp_path / "cgan")
    loaded = CGANManipulator.load(tmp_path / "cgan")
    assert loaded.covariate_names == ["dose"]
    query = Condition.constant(10, 1, source=0, covariates={"dose": torch.full((10,), 1.0)})
    torch.testing.assert_close(loaded.manipulate(x[:10], query), manipulator.manipulate(x[:10], query))
    assert not any("discriminator" in key for key in load_file(str(tmp_path / "cgan" / "weights.safetensors")))
    ignored = CGANManipulator(**{**TINY, "use_covariates": False}).fit(
        x, Condition(labels.target, covariates={"dose": dose}), progress=False)
    assert ignored.covariate_names == []


def test_rollout_follows_a_simulated_time_course():
    adata = simulate_time_course(n_cells_per_step=20, n_genes=40, n_cell_types=2, effect_size=2.0, seed=1)
    x = torch.from_numpy(adata.X)
    steps = list(adata.uns["condition_order"])
    target = torch.tensor(adata.obs["condition"].cat.codes.to_numpy(), dtype=torch.long)
    time = torch.as_tensor(adata.obs["time"].to_numpy(), dtype=torch.float32)
    manipulator = CGANManipulator(**FAST).fit(
        x, Condition(target, covariates={"time": time}), seed=0, progress=False)
    start = target == 0
    path = manipulator.rollout(x[start], list(range(1, len(steps))), source=0)
    assert path.shape == (len(steps) - 1, int(start.sum()), x.shape[1])
    types = adata.obs["cell_type"].to_numpy()[start.numpy()]
    errors, stay = [], []
    for k, step in enumerate(steps[1:]):
        for cell_type in np.unique(types):
            truth = ground_truth_mean(adata, cell_type, step)
            rows = types == cell_type
            errors.append(np.abs(path[k][rows].mean(0).numpy() - truth).mean())
            stay.append(np.abs(x[start][rows].mean(0).numpy() - truth).mean())
    errors, stay = np.array(errors).reshape(-1, 2).mean(1), np.array(stay).reshape(-1, 2).mean(1)
    assert errors[-1] < 0.5 * stay[-1], (errors, stay)           # the end of the course is reached
    assert (errors <= stay + 0.02).all(), (errors, stay)          # no step is worse than not moving
    explicit = manipulator.rollout(x[start][:5], [Condition.constant(5, 1, source=0), Condition.constant(5, 2)],
                                   source=0)
    torch.testing.assert_close(explicit, path[:2, :5])
    with pytest.raises(ValueError, match="at least one"):
        manipulator.rollout(x[:2], [], source=0)


def test_pipeline_in_gene_space_without_context():
    from virtualcell.pipelines.perturbation import PerturbationPipeline

    adata, _, _ = _tiny_perturbation()
    pipe = PerturbationPipeline(encoder="identity-encoder", manipulator={"name": "cgan", **TINY})
    pipe.fit(adata, condition_key="condition", control="control", progress=False)
    control = adata[adata.obs["condition"] == "control"]
    predicted = pipe.predict(control, target="stimulated")
    assert predicted.shape == control.shape
    assert (np.asarray(predicted.X) >= 0).all()


def test_resumed_training_matches_uninterrupted(tmp_path):
    _, x, labels = _tiny_perturbation()
    whole = CGANManipulator(**{**TINY, "max_epochs": 4}).fit(x, labels, seed=2, progress=False)
    CGANManipulator(**{**TINY, "max_epochs": 2}).fit(x, labels, seed=2, progress=False, checkpoint_dir=tmp_path)
    resumed = CGANManipulator(**{**TINY, "max_epochs": 4}).fit(x, labels, seed=2, progress=False,
                                                                checkpoint_dir=tmp_path)
    assert len(resumed.history["epochs"]) == 4
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=name)


@cuda
def test_trains_on_cuda_with_mixed_precision():
    _, x, labels = _tiny_perturbation()
    manipulator = CGANManipulator(**{**TINY, "mixed_precision": True}).to("cuda")
    manipulator.fit(x.cuda(), labels.to("cuda"), progress=False)
    moved = manipulator.manipulate(x[:8].cuda(), Condition.constant(8, 1, source=0).to("cuda"))
    assert moved.device.type == "cuda" and torch.isfinite(moved).all()
