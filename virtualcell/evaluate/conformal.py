"""The benchmark's ``--conformal`` option: conformal intervals of every method's predicted mean, per unit.

For each held-out unit and method, the method is calibrated on the unit's *training* cells only
(:func:`virtualcell.selection.conformal.inner_residuals`: leave one training context out for OOS /
OOD, one training replicate out for PERT; K extra fits, once per distinct training set), and the
interval ``mean(P)_g +- q sigma_g`` is scored against the unit's real mean (docs/uncertainty.md):

- ``conformal_coverage<L>``: the fraction of the unit's top DEGs whose real mean lies inside the
  level-``L`` interval (scope ``"degs"``, the protocol's ``coverage90``), ``conformal_width<L>`` its mean
  width there; ``..._all``: the same over every gene with the ``"all"`` calibration;
- ``conformal_pooled_coverage<L>``: the same DEGs with the pooled (not per-unit) quantile, for comparison;
- ``conformal_q<p>_coverage<L>``: the same DEGs' real per-gene ``p`` cell quantile inside the interval
  of the calibrated cell quantiles (``p`` = 0.1, 0.9) around the predicted cells' quantile;
- ``conformal_units`` (K) and ``seconds_conformal``.

``auto`` (``select``) already carries a calibration from its own inner CV: it is used as it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..metrics.conformal import LEVELS, Calibration, level_tag, population_quantiles
from ..pipelines.holdout import UnitResult, mask_key

__all__ = ["unit_coverage", "ConformalScorer"]


def unit_coverage(calibration: Calibration, pred_mean: np.ndarray, true_mean: np.ndarray, degs: np.ndarray,
                  levels: Sequence[float] = LEVELS, prefix: str = "conformal_",
                  all_genes: bool = True) -> dict[str, float]:
    """Coverage and mean width of ``calibration``'s intervals around ``pred_mean`` [g] for ``true_mean`` [g]
    over the positions ``degs`` (scope ``"degs"``) and, with ``all_genes``, over every gene (``"all"``)."""
    out: dict[str, float] = {}
    scopes = [("degs", degs, "")] + ([("all", np.arange(true_mean.size), "_all")] if all_genes else [])
    for scope, idx, suffix in scopes:
        if scope not in calibration.scopes:
            continue
        for level in levels:
            lo, hi = calibration.interval(pred_mean, level, scope)
            inside = (true_mean[idx] >= lo[idx]) & (true_mean[idx] <= hi[idx])
            tag = level_tag(level)
            out[f"{prefix}coverage{tag}{suffix}"] = float(inside.mean())
            out[f"{prefix}width{tag}{suffix}"] = float((hi - lo)[idx].mean())
    return out


class ConformalScorer:
    """Calibrates each method once per distinct training mask and scores each unit's prediction.

    ``x`` [n, g], ``obs`` and ``genes``: the run's cells; ``fold_key``: the column of the inner folds
    (contexts for OOS / OOD, replicates for PERT, ``replicate=True``).
    """

    def __init__(self, x: np.ndarray, obs, genes: list[str], *, fold_key: str, replicate: bool, condition_key: str,
                 control: str, n_top: int, seed: int, levels: Sequence[float] = LEVELS, min_cells: int = 10) -> None:
        self.x, self.obs, self.genes, self.fold_key, self.replicate = x, obs, genes, fold_key, replicate
        self.condition_key, self.control, self.n_top, self.seed = condition_key, control, n_top, seed
        self.levels, self.min_cells = tuple(levels), min_cells
        self.cache: dict[tuple[str, bytes], tuple[Calibration | None, Calibration | None, float, str | None]] = {}

    def _calibrate(self, result: UnitResult, fit: Callable[[Any], Any], columns: list[str]):
        from ..data.checks import DataError
        from ..selection.conformal import inner_residuals
        from .cells import subset_cells

        metadata = getattr(result.model, "metadata", None) or {}
        if "conformal" in metadata:                      # auto: calibrated by select's own inner CV
            return Calibration.from_dict(metadata["conformal"]), None, 0.0, None
        start = time.perf_counter()
        train = subset_cells(self.x, self.obs, self.genes, result.task.train,
                             list(dict.fromkeys([*columns, self.condition_key, self.fold_key])))
        keys = ({"replicate_key": self.fold_key} if self.replicate else {"context_key": self.fold_key})
        try:
            residuals = inner_residuals(fit, train, condition_key=self.condition_key, control=self.control,
                                        columns=columns, n_top=self.n_top, min_cells=self.min_cells, seed=self.seed,
                                        **keys)
        except DataError as error:
            return None, None, time.perf_counter() - start, str(error)
        unit = residuals.calibration(levels=self.levels)
        pooled = residuals.calibration(levels=self.levels, method="pooled")
        return unit, pooled, time.perf_counter() - start, None

    def scores(self, result: UnitResult, fit: Callable[[Any], Any], columns: list[str]) -> dict[str, Any]:
        """The unit's ``conformal_*`` scores for ``result`` (its method fitted by ``fit(train_adata)``)."""
        key = (result.label, mask_key(result.task.train))
        if key not in self.cache:
            self.cache[key] = self._calibrate(result, fit, columns)
        unit, pooled, seconds, refused = self.cache[key]
        if unit is None:
            return {"conformal_refused": refused}
        truth = result.truth
        lookup = {g: i for i, g in enumerate(self.genes)}
        degs = np.array([lookup[g] for g in truth.degs], dtype=int)
        pred_mean, true_mean = result.pred.mean(axis=0), truth.stim.mean(axis=0)
        out: dict[str, Any] = unit_coverage(unit, pred_mean, true_mean, degs, self.levels)
        if pooled is not None:
            out.update(unit_coverage(pooled, pred_mean, true_mean, degs, self.levels, "conformal_pooled_", False))
        for p, cells in unit.cell_quantiles.items():     # conformal_q10_coverage90: the real cells' 10% quantile
            pred_q, true_q = (population_quantiles(a, (p,))[0] for a in (result.pred, truth.stim))
            out.update(unit_coverage(cells, pred_q, true_q, degs, self.levels, f"conformal_q{level_tag(p)}_", False))
        out["conformal_units"] = unit.n_units
        out["seconds_conformal"] = seconds
        return out
