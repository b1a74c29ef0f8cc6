"""Conformal intervals of any pipeline from its inner folds (docs/uncertainty.md).

- :func:`inner_residuals`: fit a pipeline factory on each inner fold (leave one context or replicate
  out, :mod:`.folds`) through the one held-out loop and keep, per inner unit, the predicted mean, the
  real mean, the control mean and the unit's top DEGs, and the same three for each calibrated cell
  quantile (per gene, over the unit's predicted / real / control cells);
- :func:`calibrate_pipeline`: those residuals turned into a :class:`~virtualcell.metrics.conformal.Calibration`;
- :func:`cv_residuals` / :func:`attach_selected_calibration`: the same residuals from the predictions
  ``select``'s inner CV already made (no extra fit), for the chosen entry.

The calibration is saved with a pipeline by :func:`virtualcell.pipelines.intervals.attach_calibration`
and used by :func:`virtualcell.pipelines.intervals.predict_interval`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..metrics.conformal import CELL_QUANTILES, LEVELS, Calibration, conformal_calibration, population_quantiles
from ..pipelines.holdout import HoldoutMethod, UnitResult, run_holdout
from .cv import CVData, fold_tasks
from .folds import Fold, context_folds, replicate_folds

__all__ = ["Residuals", "inner_residuals", "calibrate_pipeline", "cv_residuals", "attach_selected_calibration",
           "unit_statistics"]


@dataclasses.dataclass
class Residuals:
    """Out-of-fold means of K inner units: ``pred``, ``true``, ``control`` [K, g], each unit's DEG positions;
    ``cell_quantiles[p]``: ``(pred, true, control)`` [K, g] of the cells' per-gene ``p`` quantile."""

    units: list[str]
    genes: list[str]
    pred: np.ndarray
    true: np.ndarray
    control: np.ndarray
    degs: list[np.ndarray]
    n_top: int
    seconds: float = 0.0
    cell_quantiles: dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]] = dataclasses.field(default_factory=dict)

    def calibration(self, *, levels: Sequence[float] = LEVELS, method: str = "unit", unit_level: float = 0.5,
                    floor: float = 0.1) -> Calibration:
        """:func:`virtualcell.metrics.conformal.conformal_calibration` of these residuals (the mean's, with one
        nested calibration per cell quantile)."""
        options = dict(genes=self.genes, degs=self.degs, levels=levels, method=method, unit_level=unit_level,
                       floor=floor, n_top=self.n_top)
        cells = {p: conformal_calibration(*stats, **options) for p, stats in self.cell_quantiles.items()}
        return dataclasses.replace(conformal_calibration(self.pred, self.true, self.control, **options),
                                   cell_quantiles=cells)


def unit_statistics(pred: np.ndarray, stim: np.ndarray, ctrl: np.ndarray,
                    cell_quantiles: Sequence[float]) -> list[np.ndarray]:
    """One unit's ``[pred mean, real mean, control mean, then per p: pred, real, control p quantile]`` [g] each,
    from its predicted ``pred`` [n, g], real perturbed ``stim`` [m, g] and control ``ctrl`` [c, g] cells."""
    out = [np.asarray(a, dtype=np.float64).mean(0) for a in (pred, stim, ctrl)]
    if cell_quantiles:
        by_source = [population_quantiles(a, cell_quantiles) for a in (pred, stim, ctrl)]
        out += [q[i] for i in range(len(cell_quantiles)) for q in by_source]
    return out


def _residuals(units: list[str], genes: list[str], stats: Mapping[str, list[np.ndarray]],
               degs: Mapping[str, np.ndarray], n_top: int, cell_quantiles: Sequence[float],
               seconds: float = 0.0) -> Residuals:
    """:class:`Residuals` from each unit's :func:`unit_statistics`."""
    stacked = [np.stack([stats[u][i] for u in units]) for i in range(len(stats[units[0]]))]
    cells = {float(p): tuple(stacked[3 + 3 * i: 6 + 3 * i]) for i, p in enumerate(cell_quantiles)}
    return Residuals(units, genes, *stacked[:3], [degs[u] for u in units], n_top, seconds, cells)


def _folds(obs, *, condition_key: str, control: str, context_key: str | None, replicate_key: str | None,
           min_cells: int) -> tuple[list[Fold], Callable[[Fold], np.ndarray]]:
    if replicate_key is not None:
        folds = replicate_folds(obs, replicate_key=replicate_key, condition_key=condition_key, control=control,
                                min_cells=min_cells)
        return folds, lambda fold: fold.train
    if context_key is None:
        raise ValueError("Conformal calibration needs inner folds: pass context_key (leave one context out) or "
                         "replicate_key (leave one replicate out).")
    folds = context_folds(obs, context_key=context_key, condition_key=condition_key, control=control,
                          min_cells=min_cells)
    labels = obs[context_key].astype(str).to_numpy()
    return folds, lambda fold: labels != fold.name


def _predicted(pipeline: Any, data: CVData, mask: np.ndarray, target: str, seed: int) -> np.ndarray:
    predicted = pipeline.predict(data.anndata(mask), target=target, seed=seed)
    names = list(map(str, predicted.var_names))
    x = predicted.X if names == data.genes else predicted[:, data.genes].X
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)


def inner_residuals(fit: Callable[[Any], Any], adata, *, condition_key: str = "condition", control: str = "control",
                    context_key: str | None = None, replicate_key: str | None = None,
                    columns: Sequence[str] | None = None, n_top: int = 100, min_cells: int = 10, seed: int = 0,
                    cell_quantiles: Sequence[float] = CELL_QUANTILES, progress: bool = False) -> Residuals:
    """Fit ``fit(train_adata) -> fitted pipeline`` on each inner fold of ``adata`` and keep the residuals.

    ``adata.X`` [n, g] must be the space the pipeline predicts in (log-normalised; the pipeline's
    ``preprocess`` None). Folds: ``replicate_key`` (leave one replicate out) when given, else
    ``context_key`` (leave one context out, >= 3 contexts). ``columns``: the obs columns the pipeline
    sees (default ``condition_key`` and, without ``replicate_key``, ``context_key``). Each fold costs
    one fit; each unit a prediction and the held-out loop's scoring (its DEGs are the unit's ``n_top``).
    ``cell_quantiles``: the per-gene cell quantiles ``p`` to keep residuals of (``()``: the mean only).
    """
    from scipy import sparse

    start = time.perf_counter()
    folds, reference = _folds(adata.obs, condition_key=condition_key, control=control, context_key=context_key,
                              replicate_key=replicate_key, min_cells=min_cells)
    if columns is None:
        columns = [condition_key] + ([context_key] if context_key and replicate_key is None else [])
    x = adata.X.toarray() if sparse.issparse(adata.X) else np.asarray(adata.X)
    data = CVData(np.asarray(x, dtype=np.float32), adata.obs[list(columns)], list(map(str, adata.var_names)))
    stats: dict[str, list[np.ndarray]] = {}
    degs: dict[str, np.ndarray] = {}

    def on_result(result: UnitResult) -> None:
        truth = result.truth
        lookup = {g: i for i, g in enumerate(truth.genes)}
        stats[result.task.name] = unit_statistics(result.pred, truth.stim, truth.ctrl, cell_quantiles)
        degs[result.task.name] = np.array([lookup[g] for g in truth.degs], dtype=int)

    method = HoldoutMethod("conformal", lambda task: fit(data.anndata(task.train)),
                           lambda model, task: _predicted(model, data, task.source, task.target, seed))
    tasks = fold_tasks(folds, reference)
    # only the truths' DEGs and the predictions are used: the loop's distribution metrics get a 2-PC space
    run_holdout(data.x, data.genes, tasks, [method], n_top=n_top, n_pcs=2, seed=seed, on_result=on_result,
                progress=progress, desc="conformal inner folds")
    units = [t.name for t in tasks if t.name in stats]
    return _residuals(units, data.genes, stats, degs, n_top, cell_quantiles, time.perf_counter() - start)


def calibrate_pipeline(fit: Callable[[Any], Any], adata, *, levels: Sequence[float] = LEVELS, method: str = "unit",
                       unit_level: float = 0.5, floor: float = 0.1, **folds: Any) -> Calibration:
    """Conformal calibration of the pipelines that ``fit(train_adata)`` makes, from ``adata``'s inner folds.

    >>> fit = lambda train: vc.PerturbationPipeline("pca", "latent-arithmetic").fit(
    ...     train, context_key="cell_type", progress=False)                                # doctest: +SKIP
    >>> cal = calibrate_pipeline(fit, train, context_key="cell_type")                    # doctest: +SKIP
    >>> attach_calibration(fit(train), cal)      # virtualcell.pipelines.intervals      # doctest: +SKIP

    ``folds``: :func:`inner_residuals`'s options (``condition_key``, ``control``, ``context_key``,
    ``replicate_key``, ``columns``, ``n_top``, ``min_cells``, ``seed``, ``cell_quantiles``, ``progress``).
    K extra fits.
    """
    return inner_residuals(fit, adata, **folds).calibration(levels=levels, method=method, unit_level=unit_level,
                                                            floor=floor)


def cv_residuals(preds: Mapping[str, np.ndarray], truths: Mapping[str, Any], units: Sequence[str],
                 n_top: int, cell_quantiles: Sequence[float] = ()) -> Residuals | None:
    """:class:`Residuals` from an inner CV's predicted cells ``preds[unit]`` [n, g] and ``truths[unit]``
    (:class:`~virtualcell.metrics.HeldOutTruth`) of ``units``; None when fewer than 2 units have both."""
    units = [u for u in units if u in preds and u in truths]
    if len(units) < 2:
        return None
    genes = [str(g) for g in truths[units[0]].genes]
    lookup = {g: i for i, g in enumerate(genes)}
    stats = {u: unit_statistics(preds[u], truths[u].stim, truths[u].ctrl, cell_quantiles) for u in units}
    degs = {u: np.array([lookup[g] for g in truths[u].degs], dtype=int) for u in units}
    return _residuals(units, genes, stats, degs, n_top, cell_quantiles)


def attach_selected_calibration(pipeline: Any, cv: Any, folds: Sequence[Fold], entry: str, n_top: int,
                                cell_quantiles: Sequence[float] = CELL_QUANTILES) -> Any:
    """Calibrate ``select``'s fitted ``entry`` from the inner CV's out-of-fold predictions of it (no extra fit)
    and keep it in ``pipeline.metadata["conformal"]``; returns the :class:`Calibration`, or None when the inner
    CV kept no such predictions (fewer than 2 units, or an entry whose predictions were not kept).

    ``cv``: the :class:`~.cv.InnerCV` (``preds[entry]``, ``truths``); a ``+spread`` entry has its base entry's
    means (the spread step keeps each gene's mean); its cell quantiles (``cell_quantiles``) are calibrated
    from its own out-of-fold cells when the inner CV kept them (``preds[entry]``), else not at all.
    """
    from ..pipelines.intervals import attach_calibration
    from .spread import SUFFIX

    units = [u.name for f in folds for u in f.units]
    base = entry.removesuffix(SUFFIX)
    residuals = cv_residuals(cv.preds.get(base, {}), cv.truths, units, n_top, cell_quantiles if base == entry else ())
    if residuals is None:
        return None
    if base != entry:
        cells = cv_residuals(cv.preds.get(entry, {}), cv.truths, units, n_top, cell_quantiles)
        if cells is not None and cells.units == residuals.units:
            residuals.cell_quantiles = cells.cell_quantiles
    calibration = residuals.calibration()
    attach_calibration(pipeline, calibration)
    return calibration
