"""nearest-target: copies the response of the training target nearest by personalized PageRank."""

import numpy as np
import pytest
import torch

from virtualcell import PerturbationPipeline
from virtualcell.data.simulate_screen import simulate_screen
from virtualcell.instruments.manipulators.nearest_target import personalized_pagerank


def test_personalized_pagerank_is_a_distribution_that_prefers_neighbours():
    adjacency = np.zeros((4, 4))
    for i, j in ((0, 1), (1, 2), (2, 3)):
        adjacency[i, j] = adjacency[j, i] = 1.0
    ppr = personalized_pagerank(adjacency, alpha=0.85)
    np.testing.assert_allclose(ppr.sum(1), 1.0)
    assert ppr[0, 1] > ppr[0, 2] > ppr[0, 3]


def test_unseen_target_gets_a_module_mates_response(tmp_path):
    adata = simulate_screen(n_genes=40, n_modules=4, n_targets=8, n_control=80, n_per_target=15, seed=3)
    module = dict(zip(adata.var_names, adata.var["module"]))
    targets = adata.uns["simulate_screen"]["targets"]
    held = next(t for t in targets if sum(module[u] == module[t] for u in targets) > 1)
    pipe = PerturbationPipeline(encoder="identity-encoder", manipulator="nearest-target")
    pipe.fit(adata[adata.obs.condition != held].copy(), progress=False)
    manipulator = pipe.manipulator
    nearest = manipulator.nearest_name(pipe.conditions.id(held))
    assert nearest in targets and nearest != held
    ctrl = adata[adata.obs.condition == "control"]
    shift = manipulator.shifts(torch.tensor([pipe.conditions.id(held)]))[0].numpy()
    observed = np.asarray(adata[adata.obs.condition == nearest].X).mean(0) - np.asarray(ctrl.X).mean(0)
    np.testing.assert_allclose(shift, observed, atol=1e-4)        # the mate's observed response, copied
    pipe.save(tmp_path / "nt")
    loaded = PerturbationPipeline.load(tmp_path / "nt")
    assert loaded.manipulator.nearest_name(pipe.conditions.id(held)) == nearest


def test_unconnected_target_is_refused(tmp_path):
    adata = simulate_screen(n_genes=30, n_modules=3, n_targets=4, n_control=60, n_per_target=15, seed=4)
    genes = list(adata.var_names)
    targets = adata.uns["simulate_screen"]["targets"]
    lonely = next(g for g in genes if g not in targets)
    edges = tmp_path / "edges.csv"
    edges.write_text("a,b\n" + "".join(f"{targets[0]},{t}\n" for t in targets[1:]) + f"{lonely},{genes[-1] if genes[-1] not in targets else genes[-2]}\n")
    pipe = PerturbationPipeline(encoder="identity-encoder", manipulator={"name": "nearest-target", "network": str(edges)})
    pipe.fit(adata, progress=False)
    ctrl = adata[adata.obs.condition == "control"]
    with pytest.raises(ValueError, match="No training target is connected"):
        pipe.predict(ctrl, target=lonely)
    isolated = next(g for g in genes if g not in targets and g != lonely and g not in (genes[-1], genes[-2]))
    with pytest.raises(ValueError, match="no edge touches it"):
        pipe.predict(ctrl, target=isolated)
