"""The inner cross-validation of :func:`virtualcell.selection.select_pipeline`, run through the one held-out loop.

Every inner unit (:mod:`.folds`) is a :class:`~virtualcell.pipelines.splits.Task` whose training mask is its
fold's, so :func:`virtualcell.pipelines.holdout.run_holdout` fits each candidate once per fold, predicts each
unit of the fold from its control cells and scores it with :func:`virtualcell.metrics.score_prediction`
(the distribution metrics' PCA fitted on the cells outside the unit, in float64).

With ``n_jobs > 1`` the (fold, candidate) fits and predictions run first in ``n_jobs`` spawned worker
processes (one torch thread each, the data sent once per worker); the loop then replays them, so the
truths, scores and tables are the serial ones.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..metrics.score import HeldOutTruth
from ..pipelines.disk_matrix import DiskMatrix
from ..pipelines.holdout import HoldoutMethod, UnitResult, mask_key, run_holdout
from ..pipelines.method_cells import method_cells
from ..pipelines.splits import Task
from .candidates import Candidate
from .folds import Fold

__all__ = ["CVData", "InnerCV", "fit_candidate", "fold_tasks", "run_inner_cv"]


@dataclasses.dataclass(frozen=True, eq=False)
class CVData:
    """The inner CV's cells: expression ``x`` [n, g] (preprocessed), the candidates' ``obs`` columns, ``genes``."""

    x: np.ndarray | DiskMatrix
    obs: pd.DataFrame
    genes: list[str]

    def anndata(self, mask: np.ndarray, *, for_fit: bool = False):
        """The cells ``mask`` [n] as an AnnData (obs columns as categories); with ``for_fit`` and ``x`` on disk
        (a :class:`~virtualcell.pipelines.disk_matrix.DiskMatrix`), their ``DiskCells`` (read by the fit)."""
        return method_cells(self.x, self.obs, self.genes, mask, list(self.obs.columns), for_fit=for_fit)


@dataclasses.dataclass
class InnerCV:
    """What the inner CV found: ``preds[candidate][unit]`` [n_source, g] (float32), ``scores[candidate][unit]``
    (metrics v2), ``seconds[candidate]`` (one fit per fold) and ``truths[unit]`` (real cells, DEGs, PCA)."""

    preds: dict[str, dict[str, np.ndarray]]
    scores: dict[str, dict[str, dict[str, float]]]
    seconds: dict[str, list[float]]
    truths: dict[str, HeldOutTruth]


def fit_candidate(candidate: Candidate, train, *, condition_key: str, control: str, context_key: str | None,
                  seed: int, preprocess: Any = None, layer: str | None = None, progress: bool = False):
    """A fresh pipeline of ``candidate`` fitted on ``train`` (seeded): ``(pipeline, seconds)``."""
    from ..execution import seed_everything
    from ..pipelines.perturbation import PerturbationPipeline

    pipeline = PerturbationPipeline(**candidate.specs(), preprocess=preprocess)
    seed_everything(seed)
    start = time.perf_counter()
    pipeline.fit(train, condition_key=condition_key, control=control, context_key=context_key, layer=layer,
                 seed=seed, progress=progress)
    return pipeline, time.perf_counter() - start


def fold_tasks(folds: Sequence[Fold], reference: Callable[[Fold], np.ndarray]) -> list[Task]:
    """One task per inner unit, fold by fold: the fold's training mask, the unit's masks, ``reference(fold)``."""
    return [Task(u.name, u.target, f.train, u.source, u.truth, reference(f)) for f in folds for u in f.units]


def _predict(pipeline, data: CVData, source: np.ndarray, target: str, seed: int) -> np.ndarray:
    predicted = pipeline.predict(data.anndata(source), target=target, seed=seed)
    names = list(map(str, predicted.var_names))
    x = predicted.X if names == data.genes else predicted[:, data.genes].X
    return np.asarray(x, dtype=np.float32)


def _method(candidate: Candidate, data: CVData, options: dict[str, Any]) -> HoldoutMethod:
    """``candidate`` fitted in this process: the model is ``(pipeline, fit seconds)``."""
    def fit(task: Task):
        return fit_candidate(candidate, data.anndata(task.train, for_fit=True), **options)

    return HoldoutMethod(candidate.label, fit,
                         lambda model, task: _predict(model[0], data, task.source, task.target, options["seed"]))


def _replayed(label: str, done: dict[bytes, tuple[dict[str, np.ndarray], float]]) -> HoldoutMethod:
    """A candidate already fitted and run by a worker: the model is ``({unit: pred}, fit seconds)``."""
    return HoldoutMethod(label, lambda task: done[mask_key(task.train)], lambda model, task: model[0][task.name])


# -- worker processes ------------------------------------------------------------------------------
_DATA: dict[str, CVData] = {}


def _init_worker(data: CVData) -> None:
    import torch

    torch.set_num_threads(1)
    _DATA["data"] = data


def _job(tasks: list[Task], candidate: Candidate, options: dict[str, Any]):
    """Fit ``candidate`` on the tasks' shared training mask and predict each task (in a worker)."""
    data = _DATA["data"]
    pipeline, seconds = fit_candidate(candidate, data.anndata(tasks[0].train, for_fit=True), **options)
    preds = {t.name: _predict(pipeline, data, t.source, t.target, options["seed"]) for t in tasks}
    return candidate.label, mask_key(tasks[0].train), preds, seconds


def _run_in_workers(data: CVData, tasks: Sequence[Task], candidates: Sequence[Candidate], options: dict[str, Any],
                    n_jobs: int, progress: bool) -> list[HoldoutMethod]:
    from ..execution import progress_bar

    by_fold: dict[bytes, list[Task]] = {}
    for task in tasks:
        by_fold.setdefault(mask_key(task.train), []).append(task)
    done: dict[str, dict[bytes, tuple[dict[str, np.ndarray], float]]] = {c.label: {} for c in candidates}
    bar = progress_bar(total=len(by_fold) * len(candidates), desc="inner CV (fold x candidate)", enabled=progress)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=n_jobs, mp_context=context, initializer=_init_worker,
                                                initargs=(data,)) as pool:
        futures = [pool.submit(_job, fold, c, options) for c in candidates for fold in by_fold.values()]
        for future in concurrent.futures.as_completed(futures):
            label, key, preds, seconds = future.result()
            done[label][key] = (preds, seconds)
            bar.update(1)
    bar.close()
    return [_replayed(c.label, done[c.label]) for c in candidates]


def run_inner_cv(data: CVData, tasks: Sequence[Task], candidates: Sequence[Candidate], *, condition_key: str,
                 control: str, context_key: str | None, n_top: int, seed: int, n_jobs: int = 1,
                 progress: bool = True) -> InnerCV:
    """Every candidate on every inner task (:func:`fold_tasks`) through the held-out loop; see :class:`InnerCV`."""
    options = {"condition_key": condition_key, "control": control, "context_key": context_key, "seed": seed}
    methods = (_run_in_workers(data, tasks, candidates, options, n_jobs, progress) if n_jobs > 1 else
               [_method(c, data, options) for c in candidates])
    preds: dict[str, dict[str, np.ndarray]] = {c.label: {} for c in candidates}
    fits: dict[str, dict[bytes, float]] = {c.label: {} for c in candidates}
    truths: dict[str, HeldOutTruth] = {}

    def on_result(result: UnitResult) -> dict[str, float]:
        preds[result.label][result.task.name] = result.pred.astype(np.float32)
        fits[result.label][mask_key(result.task.train)] = float(result.model[1])
        return result.scores

    scores = run_holdout(data.x, data.genes, tasks, methods, n_top=n_top, n_pcs=50, seed=seed, pca_float64=True,
                         on_task=lambda task, truth: truths.__setitem__(task.name, truth), on_result=on_result,
                         progress=progress, desc="inner CV (unit x candidate)")
    return InnerCV(preds, scores, {label: list(v.values()) for label, v in fits.items()}, truths)
