"""``optimal-transport``: per-cell responses matched by OT, used by the nearest cells of a held-out context."""

import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("ot", reason="the optimal-transport manipulator needs POT (pip install -e '.[ot]')")

from virtualcell.component import Condition  # noqa: E402
from virtualcell.instruments.manipulators.ot_responses import barycentric_responses, ot_plan  # noqa: E402
from virtualcell.testing import ManipulatorContract  # noqa: E402

NAME = "optimal-transport"


class TestOptimalTransportContract(ManipulatorContract):
    name = NAME


def _make(**kwargs):
    from virtualcell.registry import registry

    return registry.get(NAME)(**kwargs)


def _heterogeneous(n: int = 200, d: int = 4, n_contexts: int = 4, seed: int = 0):
    """Control x = c_k + N(0, I); treated y = c_k + m + A (x' - c_k) with A = diag(2, 1, ...): the response
    ``m + (x_0 - c_k0) e_0`` varies from cell to cell along dimension 0 (its Monge map is exact)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.zeros(n_contexts, d)
    centres[:, 2] = torch.arange(n_contexts) * 0.5
    shift = torch.tensor([0.0, 3.0] + [0.0] * (d - 2))
    context = torch.arange(n_contexts).repeat_interleave(2 * n)
    condition = torch.tensor([0] * n + [1] * n).repeat(n_contexts)
    noise = torch.randn(len(context), d, generator=g)
    noise[condition == 1, 0] *= 2.0
    z = centres[context] + noise + shift * condition[:, None]
    return z, Condition(condition, None, context), centres


def _held_out(z, labels, context: int = 3):
    keep = ~((labels.context == context) & (labels.target == 1))
    query = (labels.context == context) & (labels.target == 0)
    n = int(query.sum())
    condition = Condition(torch.ones(n, dtype=torch.long), torch.zeros(n, dtype=torch.long), labels.context[query])
    return z[keep], labels.subset(keep), z[query], condition


def test_held_out_context_gets_cell_to_cell_responses_with_the_right_spread():
    z, labels, centres = _heterogeneous()
    train_z, train_labels, query_z, query = _held_out(z, labels)
    truth = z[(labels.context == 3) & (labels.target == 1)]
    manipulator = _make().fit(train_z, train_labels, seed=0)
    mean = _make(central="mean").fit(train_z, train_labels, seed=0).manipulate(query_z, query)
    true_response_0 = query_z[:, 0] - centres[3, 0]                  # the response along dim 0, per cell
    predicted_0 = mean[:, 0] - query_z[:, 0]
    assert np.corrcoef(predicted_0.numpy(), true_response_0.numpy())[0, 1] > 0.8
    sampled = manipulator.manipulate(query_z, query, generator=torch.Generator().manual_seed(0))
    ratio = float(sampled[:, 0].std() / truth[:, 0].std())
    assert 0.8 < ratio < 1.25, ratio                                 # one shift per context gives 0.5
    # the residuals are recentred: the context's mean response is exactly the chosen mean response
    torch.testing.assert_close(sampled.mean(0), query_z.mean(0) + manipulator.mean_response(0, 1), atol=1e-5, rtol=0)
    torch.testing.assert_close(sampled.mean(0), truth.mean(0), atol=0.35, rtol=0)


def test_cells_keep_a_real_partners_noise_outside_the_matching_components():
    z, labels, _ = _heterogeneous()
    noise = 0.5 * torch.randn(z.shape[0], 20, generator=torch.Generator().manual_seed(5))   # gene-space noise
    z = torch.cat([z, noise], 1)
    train_z, train_labels, query_z, query = _held_out(z, labels)
    truth = z[(labels.context == 3) & (labels.target == 1)]
    ratio = {}
    for match_dims in (4, 50):          # 50 > 24 dimensions: matched whole, the neighbour's response adds its noise
        m = _make(match_dims=match_dims).fit(train_z, train_labels, seed=0)
        assert m.anchor_coords.shape[1] == min(match_dims, 24)
        out = m.manipulate(query_z, query, generator=torch.Generator().manual_seed(0))
        ratio[match_dims] = float(out[:, 4:].std(0).mean() / truth[:, 4:].std(0).mean())
    assert 0.85 < ratio[4] < 1.15, ratio
    assert ratio[50] > 1.25, ratio


def test_auto_mean_picks_the_estimate_that_predicts_left_out_training_contexts():
    z, labels, _ = _heterogeneous()
    train_z, train_labels, query_z, query = _held_out(z, labels)
    manipulator = _make().fit(train_z, train_labels, seed=0)
    # balanced means count the held-out context's control cells (offset +1.5 in dim 2) but not its
    # treated ones: a bias that leaving each training context out reveals, so 'auto' takes 'pooled'
    assert manipulator.mean_used == "pooled"
    assert manipulator.mean_cv["pooled"] < manipulator.mean_cv["balanced"]
    balanced = _make(mean="balanced").fit(train_z, train_labels, seed=0)
    assert balanced.mean_used == "balanced" and balanced.mean_cv == {}
    one_context = _make().fit(train_z[train_labels.context == 0], train_labels.subset(train_labels.context == 0))
    assert one_context.mean_used == "balanced" and one_context.mean_cv == {}


def test_a_training_context_uses_its_own_transport_map():
    z, labels, _ = _heterogeneous()
    control = (labels.context == 1) & (labels.target == 0)
    n = int(control.sum())
    query = Condition(torch.ones(n, dtype=torch.long), torch.zeros(n, dtype=torch.long), labels.context[control])
    out = _make(k=1).fit(z, labels, seed=0).manipulate(z[control], query)
    # k=1, equal sizes: the exact plan is a permutation, so each control cell lands on a real treated cell
    treated = z[(labels.context == 1) & (labels.target == 1)]
    nearest = torch.cdist(out, treated).min(1)
    assert nearest.values.max() < 1e-2
    assert len(set(nearest.indices.tolist())) == n


def test_exact_plan_recovers_a_known_matching():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(30, 3, generator=g)
    b = a[torch.randperm(30, generator=g)] + 0.01
    forward, backward = barycentric_responses(a, b, ot_plan(a.numpy(), b.numpy()))
    torch.testing.assert_close(forward, torch.full_like(a, 0.01), atol=1e-5, rtol=0)
    torch.testing.assert_close(backward, torch.full_like(b, -0.01), atol=1e-5, rtol=0)


def test_sinkhorn_blurs_the_partners():
    z, labels, _ = _heterogeneous(n=80)
    spread = {}
    for solver in ("emd", "sinkhorn"):
        m = _make(solver=solver, epsilon=0.5).fit(z, labels, seed=0)
        assert torch.isfinite(m.response).all()
        rows = m.response_target == 1                                    # control -> treated
        partners = m.anchor_coords[m.response_anchor[rows]] + m.response[rows]
        spread[solver] = float(partners[:, 0].std())
    assert spread["emd"] > 1.8                                           # real treated cells (std 2)
    assert spread["sinkhorn"] < 0.8 * spread["emd"]


def test_mean_modes_and_central_mean_is_deterministic():
    z, labels, _ = _heterogeneous(n=60)
    train_z, train_labels, query_z, query = _held_out(z, labels)
    outs = {}
    for mean in ("balanced", "pooled", "local"):
        m = _make(mean=mean, central="mean").fit(train_z, train_labels, seed=0)
        outs[mean] = m.manipulate(query_z, query, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(outs[mean], m.manipulate(query_z, query, generator=torch.Generator().manual_seed(2)))
        samples = m.manipulate(query_z, query, n_samples=3, generator=torch.Generator().manual_seed(1))
        assert samples.shape == (3, *query_z.shape) and (samples[0] != samples[1]).any()
    assert not torch.allclose(outs["balanced"], outs["local"])


def test_max_cells_caps_the_stored_cells_and_seed_picks_them():
    z, labels, _ = _heterogeneous(n=50)
    a, b, c = (_make(max_cells=20).fit(z, labels, seed=s) for s in (0, 0, 1))
    assert a.anchor_coords.shape[0] == 4 * 2 * 20 and a.response.shape[0] == a.anchor_coords.shape[0]
    torch.testing.assert_close(a.anchor_coords, b.anchor_coords, atol=0, rtol=0)
    assert not torch.equal(a.anchor_coords, c.anchor_coords)


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="solver must be one of"):
        _make(solver="exact")
    with pytest.raises(ValueError, match="k >= 1"):
        _make(k=0)
    z, labels, _ = _heterogeneous(n=20)
    m = _make().fit(z, labels, n_conditions=3, seed=0)
    n = 5
    with pytest.raises(ValueError, match="needs condition.source"):
        m.manipulate(z[:n], Condition(torch.ones(n, dtype=torch.long)))
    with pytest.raises(ValueError, match="No training context has cells of both condition 0 and condition 2"):
        m.manipulate(z[:n], Condition.constant(n, 2, source=0, context=labels.context[:n]))


def test_missing_pot_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "ot", None)
    with pytest.raises(ImportError, match=r"pip install 'virtualcell\[ot\]'"):
        ot_plan(np.zeros((2, 2)), np.ones((2, 2)))


def test_fresh_interpreter_fit_save_load(tmp_path):
    code = f"""
import torch, virtualcell as vc
from virtualcell.component import Condition, Manipulator
from virtualcell.registry import registry
from virtualcell.testing import tiny_labels
import sys
assert 'ot' not in sys.modules, 'POT must be imported lazily'
z, labels = tiny_labels()
m = registry.get('{NAME}')(k=3).fit(z, labels, seed=0)
m.save(r'{tmp_path}/ot')
loaded = Manipulator.load(r'{tmp_path}/ot')
c = Condition.constant(10, 1, source=0, context=labels.context[:10])
g = lambda: torch.Generator().manual_seed(0)
assert torch.equal(loaded.manipulate(z[:10], c, n_samples=2, generator=g()), m.manipulate(z[:10], c, n_samples=2, generator=g()))
print('ok')
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
