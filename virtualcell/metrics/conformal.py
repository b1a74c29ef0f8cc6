"""Split-conformal intervals of a predicted *mean* response, calibrated on out-of-fold predictions.

Inner cross-validation predicts K held-out training units (contexts or replicate x target), each
from a model that never saw it. For unit k: predicted mean ``m_k = mean(P_k)`` [g], real mean
``y_k = mean(S_k)`` [g], control mean ``c_k = mean(C_k)`` [g]. A per-gene quantile of K residuals
needs ``ceil((K + 1) level) <= K`` (K >= 19 at 90%), so the scores are normalised and pooled over
genes (docs/uncertainty.md):

- scale ``sigma_g``: the spread (sd over units) of the units' real responses ``y_k - c_k`` per gene,
  with a floor of ``floor`` x its mean over genes; for unit k's own scores it is computed without
  unit k (leave one unit out), as the held-out unit's scale is computed without it;
- scores ``s_{k,g} = |y_k,g - m_k,g| / sigma^(-k)_g``;
- ``method="unit"`` (default): each unit's own finite-sample quantile over its genes,
  ``q_k = s_(ceil((n+1) level))``, then the ``ceil((K+1) unit_level)``-th smallest of ``q_1..q_K``:
  with ``unit_level=0.5`` a new exchangeable unit's coverage is at least ``level`` with
  probability >= 0.5, i.e. the calibration is of each unit's coverage over genes, not of the
  average one (a unit-level effect shifts all of a unit's scores together);
  ``method="pooled"``: the ``level`` quantile of every score, each unit weighted equally;
- interval ``m_g +- q sigma_g``.

Scopes: ``"degs"`` pools each unit's top DEGs (its own real cells against its control cells, as the
protocol's ``coverage90`` scores); ``"all"`` pools every gene.

Cell quantiles: the same construction with the per-gene ``p`` quantile over cells
(:func:`population_quantiles`) in place of the mean: predicted ``Q_p(P_k)``, real ``Q_p(S_k)``, control
``Q_p(C_k)`` (the scale is the units' spread of ``Q_p(S_k) - Q_p(C_k)``) give an interval of the real
population's ``p`` quantile per gene around the predicted population's. A calibration keeps one such
:class:`Calibration` per calibrated ``p`` in ``cell_quantiles`` (:meth:`Calibration.cell_quantile`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["Calibration", "conformal_calibration", "response_scale", "finite_quantile", "level_tag",
           "interval_scores", "population_quantiles", "LEVELS", "CELL_QUANTILES", "SCOPES", "METHODS", "FORMAT"]

LEVELS = (0.8, 0.9, 0.95)
#: the cell quantiles ``p`` that ``select`` calibrates by default (the 10% and 90% of each gene's cells)
CELL_QUANTILES = (0.1, 0.9)
SCOPES = ("degs", "all")
METHODS = ("unit", "pooled")
FORMAT = "virtualcell.conformal/1"


def level_tag(level: float) -> str:
    """``0.9`` -> ``"90"``, ``0.975`` -> ``"97.5"`` (column names: ``conformal_lo_90``)."""
    return f"{level * 100:g}"


def finite_quantile(values: np.ndarray, level: float) -> float:
    """The ``ceil((n + 1) level)``-th smallest of ``values`` [n] (the largest when that exceeds n)."""
    values = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if values.size == 0:
        raise ValueError("finite_quantile needs at least one value.")
    rank = min(max(math.ceil((values.size + 1) * level - 1e-9), 1), values.size)
    return float(values[rank - 1])


def response_scale(responses: np.ndarray, floor: float = 0.1) -> np.ndarray:
    """Per-gene scale [g] of real responses ``responses`` [K, g]: their sd over units (ddof 1; with one
    unit, its absolute response), floored as ``sqrt(sd^2 + (floor * mean_g sd)^2)`` (never 0)."""
    r = np.asarray(responses, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] == 0:
        raise ValueError(f"responses must be [units, genes] with at least one unit; got shape {r.shape}.")
    sd = r.std(axis=0, ddof=1) if r.shape[0] >= 2 else np.abs(r[0])
    base = floor * float(sd.mean()) if np.isfinite(sd).all() else 0.0
    return np.sqrt(sd ** 2 + max(base, 1e-6) ** 2)


def population_quantiles(cells: Any, probs: Sequence[float]) -> np.ndarray:
    """Per-gene quantiles ``[len(probs), g]`` over the cells of ``cells`` [n, g] (numpy's linear rule;
    the one estimator used both to calibrate and to predict cell quantiles)."""
    x = np.asarray(cells.toarray() if hasattr(cells, "toarray") else cells, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"cells must be [cells, genes] with at least one cell; got shape {x.shape}.")
    if any(not 0.0 < float(p) < 1.0 for p in probs):
        raise ValueError(f"Cell quantiles must lie in (0, 1); got {list(probs)}.")
    return np.quantile(x, [float(p) for p in probs], axis=0)


def interval_scores(pred_mean: np.ndarray, true_mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Conformal scores ``|true - pred| / scale`` [g]."""
    return np.abs(np.asarray(true_mean, np.float64) - np.asarray(pred_mean, np.float64)) / scale


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Per-gene ``scale`` [g] (``genes`` order) and, per scope and level, the conformal multiplier ``q``:
    the interval of a predicted mean ``m`` [g] is ``m +- q * scale``. ``cell_quantiles[p]``: the same for
    the cells' per-gene ``p`` quantile (module doc). JSON-safe via :meth:`to_dict`."""

    genes: tuple[str, ...]
    scale: np.ndarray
    quantiles: Mapping[str, Mapping[float, float]]
    method: str = "unit"
    unit_level: float = 0.5
    n_units: int = 0
    n_top: int | None = None
    unit_quantiles: Mapping[str, Mapping[float, list[float]]] = dataclasses.field(default_factory=dict)
    cell_quantiles: Mapping[float, "Calibration"] = dataclasses.field(default_factory=dict)

    @property
    def levels(self) -> tuple[float, ...]:
        return tuple(sorted(next(iter(self.quantiles.values()))))

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(self.quantiles)

    def default_scope(self, scope: str | None = None) -> str:
        if scope is None:
            return "degs" if "degs" in self.quantiles else "all"
        if scope not in self.quantiles:
            raise ValueError(f"This calibration has scopes {list(self.quantiles)}, not {scope!r}.")
        return scope

    def multiplier(self, level: float, scope: str | None = None) -> float:
        """``q`` of ``level`` in ``scope`` (None: ``"degs"`` when calibrated, else ``"all"``)."""
        by_level = self.quantiles[self.default_scope(scope)]
        for known, q in by_level.items():
            if abs(known - float(level)) < 1e-9:
                return float(q)
        raise ValueError(f"No conformal quantile for level {level}; this calibration has levels "
                         f"{sorted(by_level)}. Calibrate again with levels=(..., {level}).")

    def cell_quantile(self, p: float) -> "Calibration":
        """The calibration of the cells' per-gene ``p`` quantile; ValueError naming the calibrated ones."""
        for known, calibration in self.cell_quantiles.items():
            if abs(known - float(p)) < 1e-9:
                return calibration
        raise ValueError(f"No conformal calibration of the cells' {p:g} quantile; this calibration has "
                         f"{sorted(self.cell_quantiles) or 'none'}. Calibrate again with cell_quantiles=(..., {p:g}) "
                         "(virtualcell.selection.conformal.calibrate_pipeline).")

    def interval(self, mean: Any, level: float = 0.9, scope: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(lower [g], upper [g])`` around the predicted mean ``mean`` [g] (``genes`` order)."""
        mean = np.asarray(mean, dtype=np.float64)
        if mean.shape != self.scale.shape:
            raise ValueError(f"mean must have one value per calibrated gene ({self.scale.shape[0]}); got {mean.shape}.")
        half = self.multiplier(level, scope) * self.scale
        return mean - half, mean + half

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (what ``pipeline.json`` keeps under ``metadata["conformal"]``)."""
        return {"format": FORMAT, "method": self.method, "unit_level": self.unit_level, "n_units": self.n_units,
                "n_top": self.n_top, "genes": list(self.genes), "scale": [float(v) for v in self.scale],
                "quantiles": {s: {f"{lv:g}": float(q) for lv, q in by.items()} for s, by in self.quantiles.items()},
                "unit_quantiles": {s: {f"{lv:g}": [float(v) for v in qs] for lv, qs in by.items()}
                                   for s, by in self.unit_quantiles.items()}} | (
            {"cell_quantiles": {f"{p:g}": c.to_dict() for p, c in self.cell_quantiles.items()}}
            if self.cell_quantiles else {})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Calibration":
        """Inverse of :meth:`to_dict`; ValueError naming what is wrong."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ValueError(f"Not a conformal calibration (expected format {FORMAT!r}); recalibrate the pipeline "
                             "with virtualcell.selection.conformal.calibrate_pipeline.")
        genes, scale = tuple(map(str, data["genes"])), np.asarray(data["scale"], dtype=np.float64)
        if scale.shape != (len(genes),) or not np.isfinite(scale).all() or (scale <= 0).any():
            raise ValueError("The calibration's scale must hold one positive finite value per gene.")
        quantiles = {str(s): {float(lv): float(q) for lv, q in by.items()} for s, by in data["quantiles"].items()}
        units = {str(s): {float(lv): list(map(float, qs)) for lv, qs in by.items()}
                 for s, by in data.get("unit_quantiles", {}).items()}
        cells = {float(p): cls.from_dict(c) for p, c in data.get("cell_quantiles", {}).items()}
        if any(not 0.0 < p < 1.0 or c.genes != genes or c.cell_quantiles for p, c in cells.items()):
            raise ValueError("The calibration's cell_quantiles must be keyed by p in (0, 1) and cover its genes.")
        return cls(genes, scale, quantiles, str(data.get("method", "unit")), float(data.get("unit_level", 0.5)),
                   int(data.get("n_units", 0)), data.get("n_top"), units, cells)


def _positions(idx: Any, genes: Sequence[str]) -> np.ndarray:
    """Gene positions from a boolean mask, positions or names."""
    idx = np.asarray(idx)
    if idx.dtype == bool:
        return np.flatnonzero(idx)
    if idx.dtype.kind in "iu":
        return idx.astype(int)
    lookup = {g: i for i, g in enumerate(genes)}
    missing = [str(g) for g in idx if str(g) not in lookup]
    if missing:
        raise ValueError(f"degs names genes that are not in genes: {missing[:5]}.")
    return np.array([lookup[str(g)] for g in idx], dtype=int)


def _pooled_quantile(scores: Sequence[np.ndarray], level: float) -> float:
    """The ``level`` quantile of all scores with each unit weighted equally (finite-sample corrected)."""
    values = np.concatenate(scores)
    weights = np.concatenate([np.full(s.size, 1.0 / (s.size * len(scores))) for s in scores])
    order = np.argsort(values, kind="stable")
    target = min(1.0, level * (values.size + 1) / values.size)
    cumulative = np.cumsum(weights[order])
    return float(values[order][min(np.searchsorted(cumulative, target - 1e-12), values.size - 1)])


def conformal_calibration(oof_pred_means: Any, oof_true_means: Any, oof_control_means: Any, *,
                          genes: Sequence[str], degs: Sequence[Any] | None = None,
                          levels: Sequence[float] = LEVELS, method: str = "unit", unit_level: float = 0.5,
                          floor: float = 0.1, n_top: int | None = None) -> Calibration:
    """A :class:`Calibration` from K out-of-fold units (see the module doc).

    Args:
        oof_pred_means, oof_true_means, oof_control_means: [K, g] per unit: predicted mean, real mean of
            its perturbed cells, real mean of its control cells (the latter two give the scale).
        genes: the g gene names. degs: per unit, its top DEGs (mask, positions or names) for the
            ``"degs"`` scope; None: only ``"all"``.
        levels: nominal coverages in (0, 1). method: ``"unit"`` or ``"pooled"``. unit_level: the
            across-unit quantile of ``"unit"``. floor: the scale's floor (fraction of its mean).
    """
    pred, true, ctrl = (np.asarray(a, dtype=np.float64) for a in (oof_pred_means, oof_true_means, oof_control_means))
    if pred.ndim != 2 or pred.shape != true.shape or pred.shape != ctrl.shape or pred.shape[1] != len(genes):
        raise ValueError(f"oof_pred_means, oof_true_means and oof_control_means must all be [units, {len(genes)}]; "
                         f"got {pred.shape}, {true.shape}, {ctrl.shape}.")
    if pred.shape[0] < 2:
        raise ValueError(f"Conformal calibration needs at least 2 out-of-fold units; got {pred.shape[0]}.")
    if not (np.isfinite(pred).all() and np.isfinite(true).all() and np.isfinite(ctrl).all()):
        raise ValueError("The out-of-fold means contain NaN or infinite values.")
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}; got {method!r}.")
    if any(not 0.0 < lv < 1.0 for lv in levels) or not 0.0 < unit_level < 1.0:
        raise ValueError(f"levels and unit_level must lie in (0, 1); got {list(levels)} and {unit_level}.")
    if degs is not None and len(degs) != pred.shape[0]:
        raise ValueError(f"degs must give one gene set per unit ({pred.shape[0]}); got {len(degs)}.")
    responses = true - ctrl
    k = pred.shape[0]
    scores = [interval_scores(pred[i], true[i], response_scale(np.delete(responses, i, 0), floor)) for i in range(k)]
    subsets = {"all": [np.arange(len(genes))] * k}
    if degs is not None:
        subsets["degs"] = [_positions(d, genes) for d in degs]
    quantiles: dict[str, dict[float, float]] = {}
    per_unit: dict[str, dict[float, list[float]]] = {}
    for scope in ("degs", "all"):
        if scope not in subsets:
            continue
        unit_scores = [s[idx] for s, idx in zip(scores, subsets[scope]) if idx.size]
        if not unit_scores:
            raise ValueError(f"No unit has genes in scope {scope!r}.")
        per_unit[scope] = {float(lv): [finite_quantile(s, lv) for s in unit_scores] for lv in levels}
        quantiles[scope] = {float(lv): (finite_quantile(np.array(per_unit[scope][float(lv)]), unit_level)
                                        if method == "unit" else _pooled_quantile(unit_scores, lv)) for lv in levels}
    return Calibration(tuple(map(str, genes)), response_scale(responses, floor), quantiles, method, unit_level, k,
                       n_top, per_unit)
