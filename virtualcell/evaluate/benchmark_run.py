"""One benchmark run's state: how each method is fitted and predicts a unit, and what each unit records.

:func:`.benchmark.run_benchmark` hands :class:`BenchmarkRun`'s methods and callbacks to the shared
loop (:func:`virtualcell.pipelines.holdout.run_holdout`) and keeps the report it fills.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..execution import torch_threads
from ..metrics.ceiling import NOISE_CEILING, noise_ceiling, pipeline_calibration
from ..metrics.score import HeldOutTruth
from ..pipelines.holdout import HoldoutMethod, UnitResult
from ..pipelines.splits import Task
from ..selection.candidates import is_auto
from .cells import aligned_cells, subset_cells
from .methods import Method, fit_method
from .outputs import write_outputs, write_reports
from .summary import summarise

__all__ = ["BenchmarkRun"]


class BenchmarkRun:
    """A run of ``main`` (+ baselines) on the cells ``x`` [n, genes] with annotations ``obs``, filling ``report``.

    ``main_context`` / ``other_context``: the context column the main method / the baselines see (None: none).
    ``bulks[label][unit]``, ``real_bulks[unit]`` and ``half_bulks[unit]`` are the mean profiles [genes]
    that PERT's discrimination compares after the loop.
    """

    def __init__(self, x: np.ndarray, obs: pd.DataFrame, genes: list[str], report: dict[str, Any], *, protocol: str,
                 main: Method, condition_key: str, control: str, replicate_key: str, main_context: str | None,
                 other_context: str | None, seed: int, device: str, progress: bool, n_samples: int,
                 out_dir: Path | None, plots: bool, conformal: Any = None) -> None:
        self.x, self.obs, self.genes, self.report = x, obs, genes, report
        self.protocol, self.main, self.seed, self.device, self.progress = protocol, main, seed, device, progress
        self.condition_key, self.control, self.replicate_key = condition_key, control, replicate_key
        self.main_context, self.other_context = main_context, other_context
        self.n_samples, self.out_dir, self.plots = n_samples, out_dir, plots
        self.conformal = conformal   # a ConformalScorer (--conformal) or None
        self.methods: dict[str, Method] = {}
        self.bulks: dict[str, dict[str, np.ndarray]] = {label: {} for label in report["results"]}
        self.real_bulks: dict[str, np.ndarray] = {}
        self.half_bulks: dict[str, np.ndarray] = {}

    def _columns(self, method: Method) -> tuple[list[str], str | None]:
        """The obs columns ``method`` may see, and its context column."""
        context = self.main_context if method is self.main else self.other_context
        columns = [self.condition_key] + ([context] if context else [])
        if self.protocol == "pert" and method is self.main and is_auto(method.manipulator):
            columns.append(self.replicate_key)   # auto: inner leave-one-replicate-out over the training replicates
        return columns, context

    def holdout_method(self, method: Method) -> HoldoutMethod:
        """``method`` as the loop runs it: fitted on a task's training cells, predicting its source cells."""
        self.methods[method.label] = method
        columns, context = self._columns(method)

        def fit(task: Task) -> Any:
            train = subset_cells(self.x, self.obs, self.genes, task.train, columns, for_fit=True)
            pipeline = self.fit_cells(method, train, context, self.progress)
            if is_auto(method.manipulator):   # what the inner CV chose on this task's training cells
                chosen = pipeline.metadata["selection"]
                self.report.setdefault("selection", {})[task.name] = {
                    k: chosen.get(k) for k in ("winner", "table", "ensemble_weights", "spread", "folds", "seconds")}
            return pipeline

        def predict(pipeline: Any, task: Task) -> tuple[np.ndarray, Any]:
            source = subset_cells(self.x, self.obs, self.genes, task.source, columns)
            predicted = pipeline.predict(source, target=task.target, seed=self.seed)
            return aligned_cells(predicted, self.genes), (predicted, source)

        return HoldoutMethod(method.label, fit, predict)

    def fit_cells(self, method: Method, train: Any, context: str | None, progress: bool) -> Any:
        """A fresh pipeline of ``method`` fitted on the AnnData ``train`` (the run's seed and device)."""
        pipeline, _ = fit_method(method, train, condition_key=self.condition_key, control=self.control,
                                 context_key=context, seed=self.seed, device=self.device, progress=progress)
        return pipeline

    def ceiling(self, task: Task, truth: HeldOutTruth) -> None:
        """The unit's DEGs and its noise-ceiling row (a random half of S against the other half)."""
        self.report["degs"][task.name] = truth.degs
        ceiling, half_a, half_b = noise_ceiling(truth.stim, truth.ctrl, self.genes, degs=truth.degs, n_top=truth.n_top,
                                                space=truth.space, seed=self.seed)
        self.report["results"][NOISE_CEILING][task.name] = {**ceiling, **task.sizes}
        self.bulks[NOISE_CEILING][task.name], self.half_bulks[task.name] = half_a.mean(axis=0), half_b.mean(axis=0)
        self.real_bulks[task.name] = truth.stim.mean(axis=0)

    def record(self, result: UnitResult) -> dict[str, Any]:
        """One method's row for one unit (+ the main method's interval calibration, predicted cells and plot)."""
        task, truth, main = result.task, result.truth, self.methods[result.label] is self.main
        predicted, source = result.extra
        scores = dict(result.scores)
        if main and self.n_samples > 1:
            with torch_threads():
                scores.update(pipeline_calibration(result.model, source, task.target, self.n_samples, self.seed,
                                                   truth.stim, self.genes, truth.degs))
        if self.conformal is not None:
            columns, context = self._columns(self.methods[result.label])
            scores.update(self.conformal.scores(
                result, lambda train: self.fit_cells(self.methods[result.label], train, context, False), columns))
        self.bulks[result.label][task.name] = result.pred.mean(axis=0)
        row = {**scores, "seconds_train": result.seconds_train, "seconds_predict": result.seconds_predict, **task.sizes}
        self.report["results"][result.label][task.name] = row
        if main and self.out_dir is not None:
            write_outputs(self.out_dir, task, result.label, result.pred, predicted.obs, truth.stim, self.genes,
                          truth.degs, self.protocol, self.seed, self.plots)
        return row

    def checkpoint(self, task: Task) -> None:
        """After each unit: the summaries, and the report written so far."""
        summarise(self.report)
        if self.out_dir is not None:
            write_reports(self.out_dir, self.report)
