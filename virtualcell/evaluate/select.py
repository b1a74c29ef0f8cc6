"""Choose a pipeline on the user's own data by inner cross-validation (``virtualcell select``).

Protocol (docs/selection.md):

1. Folds over the given cells only (:mod:`.select_cv`): leave one context out (``context_key``,
   the OOS task; >= 3 contexts) or leave one replicate out (``replicate_key``, the PERT task).
   In a benchmark these are the outer *training* cells, so the outer held-out context is never seen.
2. Each candidate (:mod:`.select_candidates`) is fitted fresh on each fold's training cells and
   predicts each unit (context / target) of the fold from its control cells.
3. Each prediction is scored with metrics v2 (:func:`.metrics.perturbation_metrics`: DEGs from the
   unit's real cells, distribution metrics in a 50-PC PCA fitted on the cells outside the unit).
4. Selection score: per unit, the entries are ranked on each of :data:`SELECTION_METRICS`
   (``pearson_delta`` and ``r2_mean_top100`` higher is better, ``edistance_ratio`` lower is
   better; rank 1 best, ties averaged, NaN last); a candidate's score is its rank averaged over
   the metrics and the units (lower is better), reported with the standard deviation over units.
   ``edistance_ratio`` is ranked by its numerator E(P, S): the denominator E(C, S) is shared within
   a unit but may be <= 0 where the perturbation has no measurable effect (such units are left out
   of its reported mean).
5. Ensemble (``ensemble=True``, >= 2 candidates): the stacked weighted mean of the candidates'
   predictions (:mod:`.select_ensemble`). For the units of each fold, weights are fitted on the
   *other* folds' units only, so the ensemble's inner score is as honest as the candidates'.
6. Spread (``spread=True``): every entry also as ``<entry>+spread``, its per-gene cell-to-cell
   spread scaled by factors from the other folds' units only (:mod:`.select_spread`).
7. The entry with the best score (ties: the earlier one; candidates, ensemble, then spread) is fitted
   on all the given cells (the ensemble: each member with weight > 0, weights from all units) and
   returned with the selection report in ``metadata["selection"]``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from ..data.checks import DataError
from .select_candidates import Candidate, is_auto, parse_candidates
from .select_cv import Fold, context_folds, fit_candidate, replicate_folds, run_jobs, subsample_groups
from .select_ensemble import ensemble_view, leave_fold_out_ensemble
from .select_spread import SUFFIX, spread_entries, spread_summary, with_spread

__all__ = ["select_pipeline", "Selection", "SELECTION_METRICS", "rank_entries", "ENSEMBLE", "is_auto", "load_selected"]

#: metric -> +1 (higher is better) or -1 (lower is better); ``top100`` follows ``n_top``
SELECTION_METRICS: dict[str, int] = {"pearson_delta": +1, "edistance_ratio": -1, "r2_mean_top100": +1}
ENSEMBLE = "ensemble"


@dataclasses.dataclass
class Selection:
    """What :func:`select_pipeline` returns: the fitted winner, the ranked table and the full report."""

    pipeline: Any
    table: pd.DataFrame
    report: dict[str, Any]


def _metric_names(n_top: int) -> dict[str, int]:
    return {k.replace("top100", f"top{n_top}"): v for k, v in SELECTION_METRICS.items()}


def _value(unit_scores: Mapping[str, float], metric: str, for_ranking: bool) -> float:
    """A metric's value; ``edistance_ratio`` ranks by its numerator E(P, S) = ratio x E(C, S).

    The ratio's denominator E(C, S) is shared by every entry of a unit, but a U-statistic near 0
    can be negative (a perturbation with no measurable effect), which would reverse the order; the
    numerator never does. Summaries leave such units out of the ratio (it is meaningless there).
    """
    value = unit_scores.get(metric, np.nan)
    control = unit_scores.get("edistance_control")
    if metric == "edistance_ratio" and control is not None:
        if for_ranking:
            return value * control
        return value if control > 0 else np.nan
    return value


def rank_entries(scores: Mapping[str, Mapping[str, Mapping[str, float]]], metrics: Mapping[str, int]) -> pd.DataFrame:
    """Per-unit mean ranks ``[units, entries]`` from ``scores[entry][unit][metric]`` (rank 1 best, NaN last)."""
    from scipy.stats import rankdata

    entries = list(scores)
    units = list(next(iter(scores.values())))
    out = np.zeros((len(units), len(entries)))
    for i, unit in enumerate(units):
        per_metric = []
        for metric, sign in metrics.items():
            values = np.array([_value(scores[e][unit], metric, True) for e in entries], dtype=float) * sign
            values = np.where(np.isfinite(values), values, -np.inf)
            per_metric.append(rankdata(-values, method="average"))
        out[i] = np.mean(per_metric, axis=0)
    return pd.DataFrame(out, index=units, columns=entries)


def _table(scores, ranks: pd.DataFrame, metrics: Mapping[str, int], seconds: Mapping[str, float],
           weights: Mapping[str, float] | None) -> pd.DataFrame:
    rows = []
    best = ranks.to_numpy().min(1, keepdims=True)
    for j, entry in enumerate(ranks.columns):
        row = {"entry": entry, "mean_rank": float(ranks[entry].mean()), "rank_sd": float(ranks[entry].std(ddof=0)),
               "unit_wins": int((ranks[entry].to_numpy()[:, None] == best).sum())}
        for metric in metrics:
            values = np.array([_value(scores[entry][u], metric, False) for u in ranks.index], dtype=float)
            row[f"{metric}_mean"] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
            row[f"{metric}_sd"] = float(np.nanstd(values)) if np.isfinite(values).any() else float("nan")
        row["seconds_fit"] = seconds.get(entry, float("nan"))
        row["weight"] = (weights or {}).get(entry, float("nan")) if entry != ENSEMBLE else float("nan")
        rows.append(row)
    table = pd.DataFrame(rows)
    order = np.lexsort((np.arange(len(table)), table["mean_rank"].to_numpy()))
    return table.iloc[order].reset_index(drop=True)


def _score_units(x, folds: Sequence[Fold], genes, outside, n_top: int, seed: int, progress: bool):
    """Per unit: (stim, ctrl, degs, PCA space fitted on the cells outside it)."""
    import torch

    from ..execution import progress_bar
    from .distribution import fit_pca_space
    from .metrics import top_degs

    threads = torch.get_num_threads()
    units = {}
    for fold in progress_bar(folds, desc="inner units: DEGs and PCA spaces", enabled=progress):
        space = fit_pca_space(x[outside(fold)].astype(np.float64), 50, seed)
        for unit in fold.units:
            stim, ctrl = x[unit.truth].astype(np.float64), x[unit.source].astype(np.float64)
            units[unit.name] = (stim, ctrl, top_degs(stim, ctrl, genes, n=n_top), space)
            torch.set_num_threads(threads)   # scanpy's Wilcoxon test may change torch's thread count
    return units


def _metrics(pred, unit, genes, n_top: int, seed: int) -> dict[str, float]:
    from .metrics import perturbation_metrics

    stim, ctrl, degs, space = unit
    return perturbation_metrics(pred, stim, ctrl, genes, n_top=n_top, degs=degs, reference=space, seed=seed)


def select_pipeline(adata: ad.AnnData, *, candidates: Sequence[Any] | str | None = None,
                    condition_key: str = "condition", control: str = "control", context_key: str | None = None,
                    replicate_key: str | None = None, preprocess: Any = None, layer: str | None = None,
                    ensemble: bool = True, spread: bool = True, n_top: int = 100, min_cells: int = 10,
                    max_cells: int | None = None, n_jobs: int = 1, seed: int = 0, progress: bool = True) -> Selection:
    """Choose among ``candidates`` by inner cross-validation on ``adata``, then fit the winner on all of it.

    Args:
        candidates: specs (``"pca+latent-arithmetic"``, ``"vae(max_epochs=20)+latent-arithmetic"``,
            ``"mean-shift"``; see :mod:`.select_candidates`); None: ``DEFAULT_CANDIDATES``.
        context_key: leave-one-context-out folds (>= 3 contexts); candidates see this column.
        replicate_key: leave-one-replicate-out folds instead (PERT); candidates never see it.
        preprocess: as ``PerturbationPipeline(preprocess=...)``: applied once to every cell for the
            inner CV, and recorded in the final pipeline.
        ensemble: also score the stacked ensemble of the candidates (needs >= 2 candidates).
        spread: also score every entry with its spread calibrated (``<entry>+spread``, :mod:`.select_spread`).
        min_cells: fewest control / perturbed cells of an inner unit.
        max_cells: subsample each (fold, condition) group to this many cells for the inner CV only.
        n_jobs: worker processes for the (fold x candidate) fits (1 torch thread each).
    Returns:
        a :class:`Selection`; ``selection.pipeline`` is fitted and saves like any pipeline.
    """
    from ..data.fields import condition_labels, require_obs
    from ..data.preprocess import Preprocessing

    started = time.perf_counter()
    parsed = parse_candidates(candidates)
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
    mode = "replicate" if replicate_key else "context"
    columns = [condition_key] + ([context_key] if mode == "context" else [])
    keep = subsample_groups(adata.obs, [fold_key, condition_key], max_cells, seed)
    obs = adata.obs.iloc[keep][list(dict.fromkeys(columns + [fold_key]))].copy()
    folds = (context_folds(obs, context_key=context_key, condition_key=condition_key, control=control,
                           min_cells=min_cells) if mode == "context" else
             replicate_folds(obs, replicate_key=replicate_key, condition_key=condition_key, control=control,
                             min_cells=min_cells))
    recipe = Preprocessing.from_spec(preprocess).fit(adata, layer=layer)
    x = recipe.transform(adata[keep], layer=layer).astype(np.float32)
    genes = list(recipe.genes)
    fold_values = obs[fold_key].astype(str).to_numpy()
    outside = (lambda f: fold_values != f.name) if mode == "context" else (lambda f: f.train)
    units = _score_units(x, folds, genes, outside, n_top, seed, progress)

    cv_start = time.perf_counter()
    preds, fit_seconds = run_jobs(x, obs[columns], genes, folds, parsed, columns=columns, condition_key=condition_key,
                                  control=control, context_key=context_key if mode == "context" else None, seed=seed,
                                  n_jobs=n_jobs, progress=progress)
    cv_seconds = time.perf_counter() - cv_start
    order = [u.name for f in folds for u in f.units]
    scores = {c.label: {u: _metrics(preds[c.label][u], units[u], genes, n_top, seed) for u in order} for c in parsed}
    weights, per_fold, factors = None, None, None
    views = {c.label: _candidate_view(preds[c.label]) for c in parsed}
    if ensemble and len(parsed) >= 2:
        labels = [c.label for c in parsed]
        responses = {u: (units[u][1].mean(0), units[u][0].mean(0)) for u in order}
        fold_units = [(f.name, [u.name for u in f.units]) for f in folds]
        ens_preds, final_w, per_fold = leave_fold_out_ensemble(preds, responses, fold_units, labels)
        scores[ENSEMBLE] = {u: _metrics(ens_preds[u], units[u], genes, n_top, seed) for u in order}
        weights = {c.label: float(w) for c, w in zip(parsed, final_w)}
        views[ENSEMBLE] = ensemble_view(preds, labels, [per_fold[f.name] for f in folds], final_w)
    if spread:
        calibrated, factors = spread_entries(views, {u: units[u][0] for u in order},
                                             [[u.name for u in f.units] for f in folds])
        for label, by_unit in calibrated.items():
            scores[label] = {u: _metrics(by_unit[u], units[u], genes, n_top, seed) for u in order}
    metrics = _metric_names(n_top)
    ranks = rank_entries(scores, metrics)
    seconds = {label: float(np.mean(v)) for label, v in fit_seconds.items()}
    table = _table(scores, ranks, metrics, seconds, weights)
    winner = str(table["entry"].iloc[0])

    final_start = time.perf_counter()
    final_context = context_key if mode == "context" else None
    pipeline = _fit_final(adata, parsed, winner, weights, condition_key=condition_key, control=control,
                          context_key=final_context, preprocess=preprocess, layer=layer, seed=seed, progress=progress)
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
        "scores": scores, "ranks": ranks.to_dict(orient="index"), "ensemble_weights": weights,
        "ensemble_weights_per_fold": per_fold, "spread": spread_summary(factors, winner),
        "seconds": {"total": time.perf_counter() - started, "inner_cv": cv_seconds, "final_fit": final_seconds,
                    "fit_per_fold": seconds},
    }
    report["seconds"]["work_multiplier"] = report["seconds"]["total"] / max(final_seconds, 1e-9)
    from .report import json_clean

    report = json_clean(report)
    pipeline.metadata["selection"] = report
    return Selection(pipeline, table, report)


def _fit_final(adata, candidates: Sequence[Candidate], winner: str, weights, *, condition_key, control, context_key,
               preprocess, layer, seed, progress):
    def fit(candidate: Candidate):
        pipeline, _ = fit_candidate(candidate, adata, condition_key=condition_key, control=control,
                                    context_key=context_key, seed=seed, preprocess=preprocess, layer=layer,
                                    progress=progress)
        return pipeline

    winner = winner.removesuffix(SUFFIX)
    if winner != ENSEMBLE:
        return fit(next(c for c in candidates if c.label == winner))
    from .select_ensemble import EnsemblePipeline

    members = [(c, weights[c.label]) for c in candidates if weights[c.label] > 1e-6]
    total = sum(w for _, w in members)
    return EnsemblePipeline([fit(c) for c, _ in members], [w / total for _, w in members], [c.label for c, _ in members])


def _candidate_view(by_unit):
    return lambda fold, unit: by_unit[unit]


def load_selected(path, *, device: str = "cpu"):
    """Load what ``virtualcell select`` saved: a ``PerturbationPipeline`` or an ``EnsemblePipeline``."""
    from pathlib import Path

    from ..pipelines.perturbation import PerturbationPipeline
    from ..registry.limits import read_json
    from .select_ensemble import EnsemblePipeline

    file = Path(path) / "pipeline.json"
    spec = read_json(file) if file.is_file() else None      # size-checked: a hostile file is refused
    kind = spec.get("class") if isinstance(spec, dict) else None
    return (EnsemblePipeline if kind == "EnsemblePipeline" else PerturbationPipeline).load(path, device=device)
