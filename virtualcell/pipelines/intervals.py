"""Predictive quantiles of a handful of samples (Hyndman & Fan 1996, definition 6).

``S`` draws ``x_(1) <= .. <= x_(S)`` of a predictive distribution and one more draw ``y`` from the
same distribution: ``y`` falls below the k-th order statistic with probability ``k / (S + 1)``.
The ``p`` quantile at order position ``p (S + 1)`` (interpolated between neighbours, clamped to the
extremes) therefore bounds an interval that holds a new draw with about its nominal probability,
whatever ``S``. The usual sample quantile (position ``1 + p (S - 1)``, numpy's ``"linear"``) is
narrower: its 5%-95% interval of 20 draws holds a new one only about 81% of the time. This is
numpy's ``method="weibull"``; the torch version serves tensors on any device. Positions beyond the
extremes are clamped, so S samples resolve central intervals up to level ``(S - 1) / (S + 1)``
(0.905 for 20 samples: their 95% interval is the same range as their 90% one).

Conformal intervals of the predicted *mean* (docs/uncertainty.md): a pipeline whose
``metadata["conformal"]`` holds a :class:`~virtualcell.metrics.conformal.Calibration` (saved in
``pipeline.json``; :func:`attach_calibration`, or ``virtualcell.select``) gives per-gene intervals of the
predicted population mean: :func:`predict_interval`, and ``var["conformal_lo_90"]`` /
``var["conformal_hi_90"]`` (per calibrated level) of what ``predict`` returns (:func:`add_conformal_columns`).
``predict_interval(..., quantiles=(0.1, 0.9))`` adds intervals of the cells' per-gene 10% and 90% quantiles
(``q10``, ``q10_lo_90``, ``q10_hi_90``, ...) where the calibration holds them (``select`` calibrates
``virtualcell.metrics.conformal.CELL_QUANTILES``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..metrics.conformal import Calibration, level_tag, population_quantiles

__all__ = ["predictive_quantiles", "CONFORMAL_KEY", "attach_calibration", "load_calibration", "interval_table",
           "predict_interval", "add_conformal_columns"]

#: where a pipeline's ``metadata`` keeps its conformal calibration
CONFORMAL_KEY = "conformal"


def predictive_quantiles(samples: torch.Tensor, probs: Sequence[float], dim: int = 0) -> torch.Tensor:
    """Quantiles ``[len(probs), *rest]`` of ``samples`` along ``dim`` at order positions ``p (S + 1)``.

    ``samples`` [..., S, ...] with ``S >= 1`` along ``dim``; ``probs`` in (0, 1). Equals
    ``numpy.quantile(samples, probs, axis=dim, method="weibull")``.
    """
    probs = [float(p) for p in probs]
    if any(not 0.0 < p < 1.0 for p in probs):
        raise ValueError(f"probs must lie in (0, 1); got {probs}.")
    ordered = samples.sort(dim=dim).values.movedim(dim, 0)                  # [S, ...]
    s = ordered.shape[0]
    if s < 1:
        raise ValueError("predictive_quantiles needs at least one sample.")
    out = []
    for p in probs:
        position = min(max(p * (s + 1) - 1.0, 0.0), s - 1.0)                # 0-based, clamped to the extremes
        below = int(position)
        above = min(below + 1, s - 1)
        fraction = position - below
        out.append(ordered[below] + fraction * (ordered[above] - ordered[below]))
    return torch.stack(out)


def attach_calibration(pipeline: Any, calibration: Calibration) -> Any:
    """Keep ``calibration`` in ``pipeline.metadata["conformal"]`` (JSON, saved with the pipeline); returns it."""
    pipeline.metadata[CONFORMAL_KEY] = calibration.to_dict()
    return pipeline


def load_calibration(source: Any) -> Calibration:
    """The :class:`Calibration` of a pipeline (or of its ``metadata`` mapping); ValueError naming the fix."""
    metadata = source if isinstance(source, Mapping) else getattr(source, "metadata", {})
    if CONFORMAL_KEY not in metadata:
        raise ValueError("This pipeline has no conformal calibration. Choose it with virtualcell.select (which "
                         "calibrates the winner from its inner folds), or run virtualcell.selection.conformal."
                         "calibrate_pipeline and attach_calibration(pipeline, calibration).")
    return Calibration.from_dict(metadata[CONFORMAL_KEY])


def interval_table(mean: Any, genes: Sequence[str], calibration: Calibration, levels: Sequence[float] | None = None,
                   scope: str | None = None) -> pd.DataFrame:
    """Per gene (rows, ``genes`` order): ``mean`` [g] and ``lo_<tag>`` / ``hi_<tag>`` per level (NaN for a gene
    the calibration lacks). ``levels``: None, every calibrated level."""
    genes = [str(g) for g in genes]
    lookup = {g: i for i, g in enumerate(calibration.genes)}
    rows = np.array([lookup.get(g, -1) for g in genes])
    mean = np.asarray(mean, dtype=np.float64)
    scale = np.where(rows >= 0, calibration.scale[np.maximum(rows, 0)], np.nan)
    table = pd.DataFrame({"mean": mean}, index=pd.Index(genes, name="gene"))
    for level in calibration.levels if levels is None else levels:
        half = calibration.multiplier(level, scope) * scale
        table[f"lo_{level_tag(level)}"], table[f"hi_{level_tag(level)}"] = mean - half, mean + half
    return table


def predict_interval(pipeline: Any, adata: Any, *, target: str, levels: Sequence[float] | None = None,
                     scope: str | None = None, quantiles: Sequence[float] = (), **predict_kwargs: Any) -> pd.DataFrame:
    """Conformal intervals of the mean of ``adata``'s cells under ``target``: :func:`interval_table` of the
    mean over cells of ``pipeline.predict(adata, target=target, **predict_kwargs).X``.

    ``scope``: ``"degs"`` (default when calibrated: coverage calibrated over each unit's top DEGs, wider)
    or ``"all"`` (over every gene). Coverage is over genes of one held-out unit (docs/uncertainty.md).
    ``quantiles``: cell quantiles ``p`` (e.g. ``(0.1, 0.9)``) whose intervals to add: column ``q<p>`` (the
    predicted cells' per-gene ``p`` quantile) and ``q<p>_lo_<level>`` / ``q<p>_hi_<level>`` around it
    (ValueError naming the calibrated ``p`` when one is not). Calibrated for ``n_samples=1`` predictions.
    """
    calibration = load_calibration(pipeline)
    by_p = [calibration.cell_quantile(p) for p in quantiles]                 # refuse an uncalibrated p up front
    predicted = pipeline.predict(adata, target=target, **predict_kwargs)
    x = predicted.X.toarray() if hasattr(predicted.X, "toarray") else np.asarray(predicted.X)
    genes = list(map(str, predicted.var_names))
    table = interval_table(x.mean(axis=0), genes, calibration, levels, scope)
    if quantiles and x.shape[0]:
        for p, values, cal in zip(quantiles, population_quantiles(x, quantiles), by_p):
            part = interval_table(values, genes, cal, levels, scope)
            tag = f"q{level_tag(float(p))}"
            table[tag] = part.pop("mean")
            table[[f"{tag}_{c}" for c in part.columns]] = part.to_numpy()
    return table


def add_conformal_columns(predicted: Any, metadata: Mapping[str, Any]) -> None:
    """With a calibration in ``metadata``: ``predicted.var["conformal_lo_<tag>"]`` / ``["conformal_hi_<tag>"]``
    (default scope) around the mean over the predicted cells, per calibrated level; else nothing. Columns of
    another pipeline's calibration (an ensemble member's, copied with its ``var``) are dropped first.
    Every pipeline kind's ``predict`` ends with this call (the one code path)."""
    stale = [c for c in predicted.var.columns if str(c).startswith("conformal_")]
    if stale:
        predicted.var = predicted.var.drop(columns=stale)
    if CONFORMAL_KEY not in metadata or predicted.n_obs == 0:
        return
    x = predicted.X.toarray() if hasattr(predicted.X, "toarray") else np.asarray(predicted.X)
    table = interval_table(x.mean(axis=0), list(map(str, predicted.var_names)), load_calibration(metadata))
    for column in table.columns.drop("mean"):
        predicted.var[f"conformal_{column}"] = table[column].to_numpy()
