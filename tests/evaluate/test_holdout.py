"""The one held-out loop (virtualcell.pipelines.holdout) and the moved metrics' old import paths."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from virtualcell.datasets import simulate_perturbation
from virtualcell.metrics import fit_pca_space, held_out_truth, perturbation_metrics, score_prediction, top_degs
from virtualcell.pipelines.holdout import HoldoutMethod, run_holdout
from virtualcell.pipelines.splits import Task, oos_tasks


@pytest.fixture(scope="module")
def cells():
    adata = simulate_perturbation(n_cells_per_group=20, n_genes=30, n_cell_types=3, seed=0)
    return np.asarray(adata.X, dtype=np.float64), list(map(str, adata.var_names)), adata.obs


def test_score_prediction_is_perturbation_metrics(cells):
    x, genes, obs = cells
    task = oos_tasks(obs, context_key="cell_type")[0]
    stim, ctrl = x[task.truth], x[task.source]
    space = fit_pca_space(x[task.reference], 10, 0)
    truth = held_out_truth(stim, ctrl, genes, n_top=10, space=space, seed=0)
    assert truth.degs == top_degs(stim, ctrl, genes, n=10)
    assert score_prediction(ctrl, truth) == perturbation_metrics(ctrl, stim, ctrl, genes, n_top=10, degs=truth.degs,
                                                                 reference=space, seed=0)


def test_loop_fits_once_per_training_mask_and_records_refusals(cells):
    x, genes, obs = cells
    tasks = oos_tasks(obs, context_key="cell_type")
    shared = [Task(t.name, t.target, tasks[0].train, t.source, t.truth, t.reference) for t in tasks]
    fits: list[str] = []

    def fit(task):
        fits.append(task.name)
        return x[task.train].mean(axis=0)

    def predict(model, task):
        if task.name == "type_2":
            raise ValueError("cannot")
        return np.repeat(model[None], int(task.source.sum()), axis=0)

    seen = []
    scores = run_holdout(x, genes, shared, [HoldoutMethod("mean", fit, predict, refusals=(ValueError,)),
                                            HoldoutMethod("skip", fit, predict, precheck=lambda t: "no")],
                         n_top=10, n_pcs=10, progress=False, on_result=lambda r: seen.append((r.label, r.refused)))
    assert fits == ["type_0"]                                  # one training mask: one fit for every unit
    assert list(scores["mean"]) == ["type_0", "type_1"] and scores["skip"] == {}
    assert ("mean", "cannot") in seen and ("skip", "no") in seen
    assert {"pearson_delta", "seconds_train", "n_truth"} <= set(scores["mean"]["type_0"])


@pytest.mark.parametrize("old", ["metrics", "distribution", "discrimination", "calibration", "scoring", "splits"])
def test_old_import_paths_still_work_and_warn(old):
    code = (f"import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
            f"try:\n    import virtualcell.evaluate.{old}\nexcept DeprecationWarning as w:\n    print('warned', w)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("warned") and "moved to" in out
