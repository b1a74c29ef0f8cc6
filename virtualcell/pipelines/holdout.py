"""The one held-out task loop: for each held-out unit, fit each method, predict the unit, score it.

The benchmark (:func:`virtualcell.evaluate.run_benchmark`), PERT-unseen and pipeline selection's
inner cross-validation all run this loop; they differ in their tasks (:mod:`.splits`), in how a
method is fitted and asked to predict (a :class:`HoldoutMethod`), and in what they record.

>>> scores = run_holdout(x, genes, tasks, [HoldoutMethod("m", fit, predict)], n_top=100)  # doctest: +SKIP
>>> scores["m"]["CD4T"]["pearson_delta"]                                                 # doctest: +SKIP

For each :class:`~.splits.Task`: the unit's truth (:func:`unit_truth`: its real perturbed cells S =
``x[task.truth]``, control cells C = ``x[task.source]``, their DEGs and a PCA fitted on
``x[task.reference]``, reused while consecutive tasks share the reference); then for each method, a
fit on ``task.train`` (reused while consecutive tasks share the training mask, as PERT's targets or
the units of one inner-CV fold do), a prediction of the ``source`` cells, and
:func:`virtualcell.metrics.score_prediction`. Torch's CPU thread count is restored after each
Wilcoxon test and each scoring (scanpy's numba code changes it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..execution import progress_bar
from ..metrics.distribution import PCASpace, fit_pca_space
from ..metrics.score import HeldOutTruth, held_out_truth, score_prediction
from .disk_matrix import DiskMatrix
from .splits import Task

__all__ = ["HoldoutMethod", "UnitResult", "run_holdout", "unit_truth", "mask_key"]


@dataclasses.dataclass(frozen=True)
class HoldoutMethod:
    """One method of the loop.

    Attributes:
        label: its name in the results.
        fit: ``fit(task)`` -> a fresh model fitted on the cells ``task.train`` (seed it inside).
        predict: ``predict(model, task)`` -> the predicted cells [n_source, n_genes] in the loop's ``genes`` order,
            or a pair (those cells, anything to keep as ``UnitResult.extra``, e.g. the predicted AnnData).
        refusals: exception types of ``predict`` recorded as a refusal of the unit instead of raised.
        precheck: ``precheck(task)`` -> a reason to refuse the unit before any fit, or None to go on.
    """

    label: str
    fit: Callable[[Task], Any]
    predict: Callable[[Any, Task], np.ndarray | tuple[np.ndarray, Any]]
    refusals: tuple[type[BaseException], ...] = ()
    precheck: Callable[[Task], str | None] | None = None


@dataclasses.dataclass
class UnitResult:
    """One (task, method) outcome: the model, the predicted cells ``pred`` [n_source, g] (None if refused),
    its ``scores`` (empty if refused), the seconds of the fit (the shared fit's when reused) and of the
    prediction, the ``refused`` reason, and ``extra`` (what ``predict`` returned beside the cells)."""

    task: Task
    label: str
    model: Any
    truth: HeldOutTruth
    pred: np.ndarray | None
    scores: dict[str, float]
    seconds_train: float
    seconds_predict: float
    refused: str | None = None
    extra: Any = None

    def record(self) -> dict[str, Any]:
        """What a results table holds: the scores, the seconds and the task's sizes."""
        return {**self.scores, "seconds_train": self.seconds_train, "seconds_predict": self.seconds_predict,
                **self.task.sizes}


def mask_key(mask: np.ndarray) -> bytes:
    """A digest of a boolean cell mask [n] (equal masks, equal keys)."""
    return hashlib.sha256(np.packbits(mask).tobytes()).digest()


def unit_truth(x: np.ndarray, genes: Sequence[str], task: Task, *, n_top: int = 100, n_pcs: int = 50, seed: int = 0,
               pca_float64: bool = False, space: PCASpace | None = None) -> HeldOutTruth:
    """S = ``x[task.truth]``, C = ``x[task.source]`` (x [n, g], or a :class:`.disk_matrix.DiskMatrix`), their DEGs
    and, unless ``space`` is given, a PCA (``n_pcs``, ``seed``) of ``x[task.reference]`` (``task.train`` if None),
    in float64 with ``pca_float64`` (from disk: the same PCA, from the covariance of one streamed pass)."""
    reference_mask = task.reference if task.reference is not None else task.train
    if space is None and isinstance(x, DiskMatrix):   # on disk: the same PCA from one streamed pass
        space = x.pca_space(reference_mask, n_pcs, seed, float64=pca_float64)
    elif space is None:
        reference = x[reference_mask]
        space = fit_pca_space(reference.astype(np.float64) if pca_float64 else reference, n_pcs, seed)
    return held_out_truth(x[task.truth], x[task.source], genes, n_top=n_top, space=space, seed=seed)


def run_holdout(x: np.ndarray, genes: Sequence[str], tasks: Sequence[Task], methods: Sequence[HoldoutMethod], *,
                n_top: int = 100, n_pcs: int = 50, seed: int = 0, pca_float64: bool = False,
                on_task: Callable[[Task, HeldOutTruth], None] | None = None,
                on_result: Callable[[UnitResult], Mapping[str, Any] | None] | None = None,
                on_task_done: Callable[[Task], None] | None = None,
                progress: bool = True, desc: str = "held-out units") -> dict[str, dict[str, dict[str, Any]]]:
    """Run every method on every task; returns ``{label: {task.name: record}}`` (refused units left out).

    Args:
        x: every cell's expression [n, g] (the space the metrics are computed in); genes: its g names.
        tasks: the held-out units (:mod:`.splits`), in order.
        methods: the methods, in order (each fitted once per distinct consecutive ``task.train``).
        n_top, n_pcs, seed, pca_float64: the truth of each unit (:func:`unit_truth`) and the metrics' seed.
        on_task: called with each task and its truth before the methods run (e.g. a noise-ceiling row).
        on_result: called with each :class:`UnitResult` (refused ones included); the mapping it returns is
            the unit's record (None: ``result.record()``).
        on_task_done: called after every method ran on a task (e.g. to write progress to disk).
    """
    genes = [str(g) for g in genes]
    records: dict[str, dict[str, dict[str, Any]]] = {m.label: {} for m in methods}
    fitted: dict[str, tuple[bytes, Any, float]] = {}
    space: tuple[bytes, PCASpace] | None = None
    bar = progress_bar(tasks, desc=desc, enabled=progress)
    for task in bar:
        bar.set_postfix_str(task.name)
        ref_key = mask_key(task.reference if task.reference is not None else task.train)
        truth = unit_truth(x, genes, task, n_top=n_top, n_pcs=n_pcs, seed=seed, pca_float64=pca_float64,
                           space=space[1] if space is not None and space[0] == ref_key else None)
        space = (ref_key, truth.space)
        if on_task is not None:
            on_task(task, truth)
        for method in methods:
            result = _run_one(method, task, truth, fitted)
            record = on_result(result) if on_result is not None else None
            if result.refused is None:
                records[method.label][task.name] = dict(record) if record is not None else result.record()
        if on_task_done is not None:
            on_task_done(task)
    return records


def _run_one(method: HoldoutMethod, task: Task, truth: HeldOutTruth,
             fitted: dict[str, tuple[bytes, Any, float]]) -> UnitResult:
    """Fit (or reuse), predict and score one method on one task."""
    reason = method.precheck(task) if method.precheck is not None else None
    if reason is not None:
        return UnitResult(task, method.label, None, truth, None, {}, 0.0, 0.0, reason)
    train_key = mask_key(task.train)
    if method.label not in fitted or fitted[method.label][0] != train_key:
        start = time.perf_counter()
        model = method.fit(task)
        fitted[method.label] = (train_key, model, time.perf_counter() - start)
    _, model, seconds_train = fitted[method.label]
    start = time.perf_counter()
    try:
        output = method.predict(model, task)
    except method.refusals as error:
        return UnitResult(task, method.label, model, truth, None, {}, seconds_train, 0.0, str(error))
    seconds_predict = time.perf_counter() - start
    pred, extra = output if isinstance(output, tuple) else (output, None)
    pred = np.asarray(pred, dtype=np.float64)
    return UnitResult(task, method.label, model, truth, pred, score_prediction(pred, truth), seconds_train,
                      seconds_predict, extra=extra)
