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
4. Selection score (:mod:`.ranking`): a scale-aware loss per unit (``1 - pearson_delta``, the energy-distance
   ratio where E(C, S) > 0, ``1 - R²`` of the top DEGs; mean over the metrics), averaged per fold, with
   the standard error of each entry's difference to the best over the folds.
5. Ensemble (``ensemble=True``, >= 2 candidates): the stacked mean response of the candidates on one
   member's cells (:mod:`.stacking`). For the units of each fold, weights and base member are fitted on
   the *other* folds' units only, so the ensemble's inner score is as honest as the candidates'.
6. Spread (``spread=True``): every entry also as ``<entry>+spread``, its per-gene cell-to-cell
   spread scaled by factors from the other folds' units with a measurable effect only (:mod:`.spread`).
7. The rule (``rule``, default ``"one-se"``): the first entry, in the order candidates (as listed, simplest
   first), ensemble, then ``+spread``, whose mean loss is within one standard error of the best's. It is
   fitted on all the given cells and returned with the report in ``metadata["selection"]``.

Budget: by default every inner fit is the final fit's (all cells, each component's own defaults), so the
ranking is the ranking of what is finally fitted. ``quick=True`` (or ``max_cells`` / ``max_epochs``)
subsamples cells and caps epochs for the inner CV only; the table names the budget and a warning says
that its ranking may not transfer. :func:`select` is ``virtualcell.select``.
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
from ..pipelines.disk_matrix import DiskMatrix, disk_cells_for
from ..pipelines.fit_from_disk import is_on_disk
from ..pipelines.pipeline import Pipeline
from ..train.disk_cells import DiskCells
from .candidates import Candidate, capped, parse_candidates
from .conformal import attach_selected_calibration
from .cv import CVData, fold_tasks, run_inner_cv
from .entries import Combined, combined_entries, fit_entry
from .folds import context_folds, replicate_folds, subsample_groups
from .ranking import ENSEMBLE, choose_entry, metric_names, rank_entries, ranked_table, unit_losses
from .spread import SUFFIX, spread_summary

__all__ = ["select", "select_pipeline", "Selection", "load_selected", "QUICK_MAX_CELLS", "QUICK_MAX_EPOCHS"]

#: ``quick=True``: cells per (fold, condition) group and the epoch cap of the inner fits (a priori)
QUICK_MAX_CELLS = 200
QUICK_MAX_EPOCHS = 15


@dataclasses.dataclass
class Selection:
    """What :func:`select_pipeline` returns: the fitted winner, the ranked table and the full report;
    ``candidates``, ``combined`` and ``genes`` let :func:`~.entries.fit_entry` fit any other entry."""

    pipeline: Any
    table: pd.DataFrame
    report: dict[str, Any]
    candidates: list[Candidate] = dataclasses.field(default_factory=list)
    combined: Combined = dataclasses.field(default_factory=Combined)
    genes: list[str] = dataclasses.field(default_factory=list)


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


def _budget(quick: bool, max_cells: int | None, max_epochs: int | None) -> tuple[int | None, int | None, str]:
    """The inner CV's cells and epochs, and the budget's name (``full`` or ``quick(...)``), with a warning."""
    import warnings

    if quick:
        max_cells = QUICK_MAX_CELLS if max_cells is None else max_cells
        max_epochs = QUICK_MAX_EPOCHS if max_epochs is None else max_epochs
    if max_cells is None and max_epochs is None:
        return None, None, "full"
    name = f"quick(max_cells={max_cells}, max_epochs={max_epochs})"
    warnings.warn(f"select: {name} inner CV: the inner fits are cheaper than the final fit, so the ranking may "
                  "not transfer to it (a data-hungry candidate is judged below its final fit). Leave quick, "
                  "max_cells and max_epochs unset for the faithful default.", UserWarning, stacklevel=3)
    return max_cells, max_epochs, name


def select_pipeline(adata: ad.AnnData, *, candidates: Sequence[Any] | str | None = None,
                    condition_key: str = "condition", control: str = "control", context_key: str | None = None,
                    replicate_key: str | None = None, preprocess: Any = None, layer: str | None = None,
                    ensemble: bool = True, spread: bool = True, n_top: int = 100, min_cells: int = 10,
                    max_cells: int | None = None, max_epochs: int | None = None, quick: bool = False,
                    rule: str = "one-se", n_jobs: int = 1, seed: int = 0, progress: bool = True) -> Selection:
    """Choose among ``candidates`` by inner cross-validation on ``adata``, then fit the winner on all of it.

    ``adata`` may be on disk (a store path, shards, a backed AnnData or a ``vc.DiskCells``): every inner and
    final fit then trains from disk and only each inner unit's cells are read; with ``preprocess`` the inner
    CV runs on a preprocessed copy written in one streamed pass to a temporary folder (docs/scale.md,
    "Benchmark and select from disk").

    Args:
        candidates: specs (``"pca+latent-arithmetic"``, ``"vae(max_epochs=20)+latent-arithmetic"``,
            ``"mean-shift"``; see :mod:`.candidates`), simplest first; None: ``DEFAULT_CANDIDATES``.
        context_key: leave-one-context-out folds (>= 3 contexts); candidates see this column.
        replicate_key: leave-one-replicate-out folds instead (PERT); candidates never see it.
        preprocess: as ``PerturbationPipeline(preprocess=...)``: applied once to every cell for the
            inner CV, and recorded in the final pipeline.
        ensemble: also score the stacked ensemble of the candidates (needs >= 2 candidates).
        spread: also score every entry with its spread calibrated (``<entry>+spread``, :mod:`.spread`).
        min_cells: fewest control / perturbed cells of an inner unit.
        max_cells: subsample each (fold, condition) group to this many cells for the inner CV only (quick).
        max_epochs: cap the inner fits' epochs (quick); the final fit keeps the candidate's own.
        quick: the quick inner CV (``max_cells`` 200 and ``max_epochs`` 15 unless given); warns.
        rule: ``"one-se"`` (default), ``"min"`` or ``"rank"`` (:func:`.ranking.choose_entry`).
        n_jobs: worker processes for the (fold x candidate) fits (1 torch thread each).
    Returns:
        a :class:`Selection`; ``selection.pipeline`` is fitted and saves like any pipeline.
    """
    from ..data.preprocess import Preprocessing
    from ..io import json_clean

    started = time.perf_counter()
    parsed = parse_candidates(candidates)
    if rule not in ("one-se", "min", "rank"):
        raise ValueError(f"Unknown selection rule {rule!r}; use 'one-se' (default), 'min' or 'rank'.")
    max_cells, max_epochs, budget = _budget(quick, max_cells, max_epochs)
    on_disk = is_on_disk(adata)
    if on_disk and not isinstance(adata, DiskCells):
        adata = DiskCells.open(adata, layer=layer)
    keep, obs, columns, folds = _folds(adata, condition_key=condition_key, control=control, context_key=context_key,
                                       replicate_key=replicate_key, max_cells=max_cells, min_cells=min_cells,
                                       seed=seed)
    mode = "replicate" if replicate_key else "context"
    fold_key = replicate_key or context_key
    if on_disk:   # the inner CV runs on the log-normalised cells (with a recipe: a preprocessed copy)
        space, recipe = disk_cells_for(adata, preprocess=preprocess, progress=progress)
        x = DiskMatrix(space[keep])
    else:
        recipe = Preprocessing.from_spec(preprocess).fit(adata, layer=layer)
        x = recipe.transform(adata[keep], layer=layer).astype(np.float32)
    genes = list(recipe.genes)
    fold_values = obs[fold_key].astype(str).to_numpy()
    tasks = fold_tasks(folds, (lambda f: fold_values != f.name) if mode == "context" else (lambda f: f.train))

    cv_start = time.perf_counter()
    cv = run_inner_cv(CVData(x, obs[columns], genes), tasks, [capped(c, max_epochs) for c in parsed],
                      condition_key=condition_key, control=control,
                      context_key=context_key if mode == "context" else None, n_top=n_top, seed=seed, n_jobs=n_jobs,
                      progress=progress)
    cv_seconds = time.perf_counter() - cv_start
    labels = [c.label for c in parsed]
    combined = combined_entries(cv, folds, labels, ensemble=ensemble, spread=spread)
    metrics = metric_names(n_top)
    ranks = rank_entries(cv.scores, metrics)
    losses = unit_losses(cv.scores, metrics)
    fold_of = {u.name: f.name for f in folds for u in f.units}
    base = labels + ([ENSEMBLE] if ENSEMBLE in cv.scores else [])
    order = base + [e + SUFFIX for e in base if e + SUFFIX in cv.scores]
    winner, se = choose_entry(losses[order], order, rule, fold_of, ranks[order])
    seconds = {label: float(np.mean(v)) for label, v in cv.seconds.items()}
    table = ranked_table(cv.scores, ranks, losses, metrics, seconds, combined.weights, se, fold_of, budget)

    final_start = time.perf_counter()
    pipeline = fit_entry(adata, parsed, winner, combined, genes, condition_key=condition_key, control=control,
                         context_key=context_key if mode == "context" else None, preprocess=preprocess,
                         layer=layer, seed=seed, progress=progress)
    attach_selected_calibration(pipeline, cv, folds, winner, n_top)   # conformal intervals (docs/uncertainty.md)
    final_seconds = time.perf_counter() - final_start
    report = {
        "protocol": f"leave-one-{mode}-out", "fold_key": fold_key, "condition_key": condition_key,
        "control": control, "candidates": [c.to_dict() for c in parsed], "metrics": metrics,
        "selection_score": "mean scale-aware loss over units and metrics (0 = perfect; lower is better)",
        "rule": rule, "order": order, "budget": budget, "max_epochs": max_epochs,
        "folds": [{"name": f.name, "units": [u.name for u in f.units], "n_train": int(f.train.sum())} for f in folds],
        "n_cells_inner": int(len(keep)), "max_cells": max_cells, "min_cells": min_cells, "n_top": n_top,
        "seed": seed, "n_jobs": n_jobs, "from_disk": on_disk, "winner": winner, "table": table.to_dict(orient="records"),
        "scores": cv.scores, "ranks": ranks.to_dict(orient="index"), "losses": losses.to_dict(orient="index"),
        "ensemble_weights": combined.weights, "ensemble_base": combined.base,
        "ensemble_weights_per_fold": {k: v[0] for k, v in (combined.per_fold or {}).items()} or None,
        "ensemble_base_per_fold": {k: labels[v[1]] for k, v in (combined.per_fold or {}).items()} or None,
        "spread": spread_summary(combined.factors, winner),
        "seconds": {"total": time.perf_counter() - started, "inner_cv": cv_seconds, "final_fit": final_seconds,
                    "fit_per_fold": seconds},
    }
    report["seconds"]["work_multiplier"] = report["seconds"]["total"] / max(final_seconds, 1e-9)
    report = json_clean(report)
    pipeline.metadata["selection"] = report
    return Selection(pipeline, table, report, parsed, combined, genes)


def load_selected(path, *, device: str = "cpu") -> Pipeline:
    """Load what ``virtualcell select`` saved, whichever kind won (``Pipeline.load`` reads every kind)."""
    return Pipeline.load(path, device=device)
