"""Choose a pipeline on the user's own data by inner cross-validation (``virtualcell select``).

Protocol (docs/selection.md):

1. Folds over the given cells only (:mod:`.folds`): leave one context out (``context_key``,
   the OOS task; >= 3 contexts) or leave one replicate out (``replicate_key``, the PERT task).
   In a benchmark these are the outer *training* cells, so the outer held-out context is never seen.
2. Each candidate (:mod:`.candidates`) is fitted fresh on each fold's training cells and
   predicts each unit (context / target) of the fold from its control cells.
   Steps 2-3 run through the one held-out loop (:mod:`.cv`, :func:`virtualcell.pipelines.holdout.run_holdout`).
3. Each prediction is scored with metrics v2 (:func:`virtualcell.metrics.score_prediction`: DEGs from the
   unit's real cells, distribution metrics in a 50-PC PCA fitted on the cells outside the unit).
4. Selection score (:mod:`.ranking`): per unit, the entries are ranked on each of
   :data:`~.ranking.SELECTION_METRICS` (rank 1 best, ties averaged, NaN last); an entry's score is its
   rank averaged over the metrics and the units (lower is better), with the standard deviation over units.
5. Ensemble (``ensemble=True``, >= 2 candidates): the stacked weighted mean of the candidates'
   predictions (:mod:`.stacking`). For the units of each fold, weights are fitted on the
   *other* folds' units only, so the ensemble's inner score is as honest as the candidates'.
6. Spread (``spread=True``): every entry also as ``<entry>+spread``, its per-gene cell-to-cell
   spread scaled by factors from the other folds' units only (:mod:`.spread`).
7. The entry with the best score (ties: the earlier one; candidates, ensemble, then spread) is fitted
   on all the given cells (the ensemble: each member with weight > 0, weights from all units) and
   returned with the selection report in ``metadata["selection"]``. :func:`select` is ``virtualcell.select``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from ..data.checks import DataError
from ..pipelines.ensemble import EnsemblePipeline
from ..pipelines.pipeline import Pipeline
from .candidates import Candidate, parse_candidates
from .cv import CVData, InnerCV, fit_candidate, fold_tasks, run_inner_cv
from .folds import Fold, context_folds, replicate_folds, subsample_groups
from .ranking import ENSEMBLE, metric_names, rank_entries, ranked_table
from .spread import SUFFIX, spread_entries, spread_summary, with_spread
from .stacking import ensemble_view, leave_fold_out_ensemble

__all__ = ["select", "select_pipeline", "Selection", "load_selected"]


@dataclasses.dataclass
class Selection:
    """What :func:`select_pipeline` returns: the fitted winner, the ranked table and the full report."""

    pipeline: Any
    table: pd.DataFrame
    report: dict[str, Any]


def select(adata: ad.AnnData, *, candidates: Sequence[Any] | str | None = None, **kwargs: Any) -> Pipeline:
    """Choose among ``candidates`` by inner cross-validation on ``adata``; fit the winner on all of it.

    >>> pipe = vc.select(train, candidates=["mean-shift", "pca+latent-arithmetic"],
    ...                  condition_key="condition", context_key="cell_type")           # doctest: +SKIP
    >>> pipe.metadata["selection"]["table"]        # the ranked inner-CV table       # doctest: +SKIP

    Returns the fitted pipeline (an ``EnsemblePipeline`` when the ensemble or a ``+spread`` entry won), its
    selection report in ``metadata["selection"]``. Options: :func:`select_pipeline` (docs/selection.md).
    """
    return select_pipeline(adata, candidates=candidates, **kwargs).pipeline


def _folds(adata: ad.AnnData, *, condition_key: str, control: str, context_key: str | None,
           replicate_key: str | None, max_cells: int | None, min_cells: int, seed: int):
    """Checks, the inner cells ``keep`` (subsampled), their obs and the folds over them."""
    from ..data.fields import condition_labels, require_obs

    if replicate_key is None and context_key is None:
        raise DataError("select needs folds: pass context_key (leave one context out, >= 3 contexts) or "
                        "replicate_key (leave one replicate out, >= 2 replicates).")
    labels = condition_labels(adata, condition_key)
    require_obs(adata, context_key, role="context")
    require_obs(adata, replicate_key, role="replicate")
    if control not in set(labels):
        raise DataError(f"Control label {control!r} is not in adata.obs[{condition_key!r}]; found "
                        f"{sorted(set(labels))[:20]}. Pass control=<the label of unperturbed cells>.")
    fold_key = replicate_key or context_key
    keep = subsample_groups(adata.obs, [fold_key, condition_key], max_cells, seed)
    columns = [condition_key] + ([context_key] if replicate_key is None else [])
    obs = adata.obs.iloc[keep][list(dict.fromkeys(columns + [fold_key]))].copy()
    folds = (context_folds(obs, context_key=context_key, condition_key=condition_key, control=control,
                           min_cells=min_cells) if replicate_key is None else
             replicate_folds(obs, replicate_key=replicate_key, condition_key=condition_key, control=control,
                             min_cells=min_cells))
    return keep, obs, columns, folds


def _combined_entries(cv: InnerCV, folds: Sequence[Fold], labels: list[str], *, ensemble: bool, spread: bool):
    """Score the stacked ensemble and the ``+spread`` entries from the candidates' inner predictions."""
    from ..metrics.score import score_prediction

    order = [u.name for f in folds for u in f.units]
    views = {label: (lambda by_unit: lambda fold, unit: by_unit[unit])(cv.preds[label]) for label in labels}
    weights, per_fold, factors = None, None, None
    if ensemble and len(labels) >= 2:
        responses = {u: (cv.truths[u].ctrl.mean(0), cv.truths[u].stim.mean(0)) for u in order}
        fold_units = [(f.name, [u.name for u in f.units]) for f in folds]
        ens_preds, final_w, per_fold = leave_fold_out_ensemble(cv.preds, responses, fold_units, labels)
        cv.scores[ENSEMBLE] = {u: score_prediction(ens_preds[u], cv.truths[u]) for u in order}
        weights = {label: float(w) for label, w in zip(labels, final_w)}
        views[ENSEMBLE] = ensemble_view(cv.preds, labels, [per_fold[f.name] for f in folds], final_w)
    if spread:
        calibrated, factors = spread_entries(views, {u: cv.truths[u].stim for u in order},
                                             [[u.name for u in f.units] for f in folds])
        for label, by_unit in calibrated.items():
            cv.scores[label] = {u: score_prediction(by_unit[u], cv.truths[u]) for u in order}
    return weights, per_fold, factors


def select_pipeline(adata: ad.AnnData, *, candidates: Sequence[Any] | str | None = None,
                    condition_key: str = "condition", control: str = "control", context_key: str | None = None,
                    replicate_key: str | None = None, preprocess: Any = None, layer: str | None = None,
                    ensemble: bool = True, spread: bool = True, n_top: int = 100, min_cells: int = 10,
                    max_cells: int | None = None, n_jobs: int = 1, seed: int = 0, progress: bool = True) -> Selection:
    """Choose among ``candidates`` by inner cross-validation on ``adata``, then fit the winner on all of it.

    Args:
        candidates: specs (``"pca+latent-arithmetic"``, ``"vae(max_epochs=20)+latent-arithmetic"``,
            ``"mean-shift"``; see :mod:`.candidates`); None: ``DEFAULT_CANDIDATES``.
        context_key: leave-one-context-out folds (>= 3 contexts); candidates see this column.
        replicate_key: leave-one-replicate-out folds instead (PERT); candidates never see it.
        preprocess: as ``PerturbationPipeline(preprocess=...)``: applied once to every cell for the
            inner CV, and recorded in the final pipeline.
        ensemble: also score the stacked ensemble of the candidates (needs >= 2 candidates).
        spread: also score every entry with its spread calibrated (``<entry>+spread``, :mod:`.spread`).
        min_cells: fewest control / perturbed cells of an inner unit.
        max_cells: subsample each (fold, condition) group to this many cells for the inner CV only.
        n_jobs: worker processes for the (fold x candidate) fits (1 torch thread each).
    Returns:
        a :class:`Selection`; ``selection.pipeline`` is fitted and saves like any pipeline.
    """
    from ..data.preprocess import Preprocessing
    from ..io import json_clean

    started = time.perf_counter()
    parsed = parse_candidates(candidates)
    keep, obs, columns, folds = _folds(adata, condition_key=condition_key, control=control, context_key=context_key,
                                       replicate_key=replicate_key, max_cells=max_cells, min_cells=min_cells,
                                       seed=seed)
    mode = "replicate" if replicate_key else "context"
    fold_key = replicate_key or context_key
    recipe = Preprocessing.from_spec(preprocess).fit(adata, layer=layer)
    x = recipe.transform(adata[keep], layer=layer).astype(np.float32)
    genes = list(recipe.genes)
    fold_values = obs[fold_key].astype(str).to_numpy()
    tasks = fold_tasks(folds, (lambda f: fold_values != f.name) if mode == "context" else (lambda f: f.train))

    cv_start = time.perf_counter()
    cv = run_inner_cv(CVData(x, obs[columns], genes), tasks, parsed, condition_key=condition_key, control=control,
                      context_key=context_key if mode == "context" else None, n_top=n_top, seed=seed, n_jobs=n_jobs,
                      progress=progress)
    cv_seconds = time.perf_counter() - cv_start
    weights, per_fold, factors = _combined_entries(cv, folds, [c.label for c in parsed], ensemble=ensemble,
                                                   spread=spread)
    metrics = metric_names(n_top)
    ranks = rank_entries(cv.scores, metrics)
    seconds = {label: float(np.mean(v)) for label, v in cv.seconds.items()}
    table = ranked_table(cv.scores, ranks, metrics, seconds, weights)
    winner = str(table["entry"].iloc[0])

    final_start = time.perf_counter()
    pipeline = _fit_final(adata, parsed, winner, weights, condition_key=condition_key, control=control,
                          context_key=context_key if mode == "context" else None, preprocess=preprocess,
                          layer=layer, seed=seed, progress=progress)
    if winner.endswith(SUFFIX):
        base = winner.removesuffix(SUFFIX)
        pipeline = with_spread(pipeline, base, dict(zip(genes, factors[base].tolist())))
    final_seconds = time.perf_counter() - final_start
    report = {
        "protocol": f"leave-one-{mode}-out", "fold_key": fold_key, "condition_key": condition_key,
        "control": control, "candidates": [c.to_dict() for c in parsed], "metrics": metrics,
        "selection_score": "mean rank over units and metrics (1 = best; lower is better)",
        "folds": [{"name": f.name, "units": [u.name for u in f.units], "n_train": int(f.train.sum())} for f in folds],
        "n_cells_inner": int(len(keep)), "max_cells": max_cells, "min_cells": min_cells, "n_top": n_top,
        "seed": seed, "n_jobs": n_jobs, "winner": winner, "table": table.to_dict(orient="records"),
        "scores": cv.scores, "ranks": ranks.to_dict(orient="index"), "ensemble_weights": weights,
        "ensemble_weights_per_fold": per_fold, "spread": spread_summary(factors, winner),
        "seconds": {"total": time.perf_counter() - started, "inner_cv": cv_seconds, "final_fit": final_seconds,
                    "fit_per_fold": seconds},
    }
    report["seconds"]["work_multiplier"] = report["seconds"]["total"] / max(final_seconds, 1e-9)
    report = json_clean(report)
    pipeline.metadata["selection"] = report
    return Selection(pipeline, table, report)


def _fit_final(adata, candidates: Sequence[Candidate], winner: str, weights, *, condition_key, control, context_key,
               preprocess, layer, seed, progress) -> Pipeline:
    def fit(candidate: Candidate):
        pipeline, _ = fit_candidate(candidate, adata, condition_key=condition_key, control=control,
                                    context_key=context_key, seed=seed, preprocess=preprocess, layer=layer,
                                    progress=progress)
        return pipeline

    winner = winner.removesuffix(SUFFIX)
    if winner != ENSEMBLE:
        return fit(next(c for c in candidates if c.label == winner))
    members = [(c, weights[c.label]) for c in candidates if weights[c.label] > 1e-6]
    total = sum(w for _, w in members)
    return EnsemblePipeline([fit(c) for c, _ in members], [w / total for _, w in members], [c.label for c, _ in members])


def load_selected(path, *, device: str = "cpu") -> Pipeline:
    """Load what ``virtualcell select`` saved, whichever kind won (``Pipeline.load`` reads every kind)."""
    return Pipeline.load(path, device=device)
