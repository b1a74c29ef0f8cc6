"""The combined entries of the inner CV (the stacked ensemble, ``<entry>+spread``) and fitting any entry.

:func:`combined_entries` scores the ensemble and the spread-calibrated entries from the candidates'
inner predictions (each fold's weights, base member and spread factors learnt on the other folds'
units only); :func:`fit_entry` fits one entry of a finished selection on all the given cells, the way
:func:`.choose.select_pipeline` fits its winner (a benchmark fits every entry this way to score it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..pipelines.ensemble import EnsemblePipeline
from .candidates import Candidate
from .cv import InnerCV, fit_candidate
from .folds import Fold
from .ranking import ENSEMBLE
from .spread import SUFFIX, spread_entries, with_spread
from .stacking import ensemble_view, leave_fold_out_ensemble

__all__ = ["Combined", "combined_entries", "effect_units", "fit_entry"]


@dataclasses.dataclass
class Combined:
    """What the final fit of a combined entry needs: ``weights`` {label: w}, the ensemble's ``base`` member,
    per-fold ``(weights, base)``, and each entry's spread ``factors`` [g] (from every usable unit)."""

    weights: dict[str, float] | None = None
    base: str | None = None
    per_fold: dict[str, tuple] | None = None
    factors: dict[str, np.ndarray] | None = None


def effect_units(cv: InnerCV, label: str) -> set[str]:
    """Units with a measurable effect: the energy distance of their control to their perturbed cells E(C, S) > 0."""
    return {u for u, s in cv.scores[label].items() if s.get("edistance_control", 1.0) > 0}


def combined_entries(cv: InnerCV, folds: Sequence[Fold], labels: list[str], *, ensemble: bool,
                     spread: bool) -> Combined:
    """Score the stacked ensemble and the ``+spread`` entries into ``cv.scores`` from the candidates' inner
    predictions; returns what their final fits need."""
    from ..metrics.score import score_prediction

    order = [u.name for f in folds for u in f.units]
    views = {label: (lambda by_unit: lambda fold, unit: by_unit[unit])(cv.preds[label]) for label in labels}
    usable = effect_units(cv, labels[0])
    out = Combined()
    if ensemble and len(labels) >= 2:
        responses = {u: (cv.truths[u].ctrl.mean(0), cv.truths[u].stim.mean(0)) for u in order}
        fold_units = [(f.name, [u.name for u in f.units]) for f in folds]
        edistance = {label: {u: s.get("edistance_ratio", np.nan) if u in usable else np.nan
                             for u, s in cv.scores[label].items()} for label in labels}
        ens_preds, final, per_fold = leave_fold_out_ensemble(cv.preds, responses, fold_units, labels, edistance)
        cv.scores[ENSEMBLE] = {u: score_prediction(ens_preds[u], cv.truths[u]) for u in order}
        cv.preds[ENSEMBLE] = {u: np.asarray(p, dtype=np.float32) for u, p in ens_preds.items()}   # conformal
        out.weights = {label: float(w) for label, w in zip(labels, final[0])}
        out.base, out.per_fold = labels[final[1]], per_fold
        views[ENSEMBLE] = ensemble_view(cv.preds, labels, [per_fold[f.name] for f in folds], final)
    if spread:
        calibrated, out.factors = spread_entries(views, {u: cv.truths[u].stim for u in order},
                                                 [[u.name for u in f.units] for f in folds], usable=usable)
        for label, by_unit in calibrated.items():
            cv.scores[label] = {u: score_prediction(by_unit[u], cv.truths[u]) for u in order}
            cv.preds[label] = {u: np.asarray(p, dtype=np.float32) for u, p in by_unit.items()}   # conformal quantiles
    return out


def fit_entry(adata, candidates: Sequence[Candidate], entry: str, combined: Combined, genes: Sequence[str], *,
              condition_key: str, control: str, context_key: str | None, preprocess: Any, layer: str | None,
              seed: int, progress: bool):
    """Fit ``entry`` (a candidate label, ``ensemble``, or either with ``+spread``) on ``adata``: a pipeline."""
    def fit(candidate: Candidate):
        pipeline, _ = fit_candidate(candidate, adata, condition_key=condition_key, control=control,
                                    context_key=context_key, seed=seed, preprocess=preprocess, layer=layer,
                                    progress=progress)
        return pipeline

    name = entry.removesuffix(SUFFIX)
    if name != ENSEMBLE:
        pipeline = fit(next(c for c in candidates if c.label == name))
    else:
        kept = [c for c in candidates if combined.weights[c.label] > 1e-6]
        total = sum(combined.weights[c.label] for c in kept)
        labels = [c.label for c in kept]
        pipeline = EnsemblePipeline([fit(c) for c in kept], [combined.weights[c.label] / total for c in kept], labels,
                                    combine="mean", base=labels.index(combined.base))
    if entry.endswith(SUFFIX):
        pipeline = with_spread(pipeline, name, dict(zip(genes, combined.factors[name].tolist())))
    return pipeline
