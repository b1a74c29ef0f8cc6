"""Task PERT-unseen: predict the knockout of a gene never perturbed in training (leave one target out).

>>> report = run_pert_unseen("papalexi2021_crispr_thp1.h5ad", preprocess="log1p",
...                          out="out/pert-unseen")                      # doctest: +SKIP

Protocol (the evaluation protocol's (docs/evaluation.md) PERT data and metrics, a new split): drop ``drop_conditions``
(``ambiguous``), preprocess every cell once; for each target ``t`` with at least ``min_cells``
cells (all replicates): train every method on all cells except ``t``'s, predict ``t``'s cells
from the control cells, score against ``t``'s real cells with metrics v2
(:func:`virtualcell.metrics.score_prediction`; DEGs of real ``t`` vs control, shared by all methods; the
distribution metrics in a 50-PC space fitted on that fold's training cells), plus the noise
ceiling row. The held-out label is handed to ``fit`` as an extra condition (an id without cells).
A method that cannot predict ``t`` is recorded under ``refused`` with its reason (a target outside a
gene-network's genes before any training, :func:`.pert_unseen_methods.panel_precheck`). After all folds, ``discrimination`` (:mod:`.discrimination`) ranks
each method's predicted pseudobulks among the real ones of the targets every method predicted.
The loop is :func:`virtualcell.pipelines.holdout.run_holdout`. Files: ``results.json``, ``results.md``,
``plots/<target>.png`` (the first method's mean scatter), ``plots/summary_<metric>.png``, and with
``write_predictions`` ``predictions/<method>/<target>.h5ad``.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from ..data.checks import DataError
from ..metrics.ceiling import NOISE_CEILING, noise_ceiling
from ..metrics.score import HeldOutTruth
from ..pipelines.holdout import HoldoutMethod, UnitResult, run_holdout
from ..pipelines.splits import Task
from . import report as reporting
from .outputs import safe_name
from .pert_unseen_methods import fit_unseen, fitted_facts, panel_precheck
from .pert_unseen_report import TABLE_METRICS, finish_report, markdown_table

__all__ = ["run_pert_unseen", "unseen_target_tasks", "PERT_UNSEEN_BASELINES", "markdown_table", "TABLE_METRICS"]

#: label -> (encoder, manipulator spec) run beside the method
PERT_UNSEEN_BASELINES: dict[str, tuple[str, Any]] = {
    "mean-perturbation": ("identity-encoder", "mean-perturbation"),
    "nearest-target": ("identity-encoder", "nearest-target"),
    "control": ("identity-encoder", "control"),
}


def unseen_target_tasks(obs: pd.DataFrame, *, condition_key: str = "condition", control: str = "control",
                        drop_conditions: Sequence[str] = ("ambiguous",), min_cells: int = 100,
                        targets: Sequence[str] | None = None) -> list[tuple[str, np.ndarray]]:
    """``[(target, cells_of_target [n] bool)]`` for every target with >= ``min_cells`` cells (or ``targets``)."""
    if condition_key not in obs:
        raise DataError(f"condition key {condition_key!r} is not a column of adata.obs; available: {list(obs.columns)}.")
    condition = obs[condition_key].astype(str).to_numpy()
    if not (condition == control).any():
        raise DataError(f"No cell has {condition_key} == {control!r}; pass --control <label of unperturbed cells>.")
    counts = pd.Series(condition).value_counts()
    candidates = [t for t in counts.index if t != control and t not in set(drop_conditions)]
    if targets is not None:
        unknown = sorted(set(map(str, targets)) - set(candidates))
        if unknown:
            raise DataError(f"Targets {unknown} have no cells; found {sorted(candidates)}.")
        chosen = [str(t) for t in targets]
    else:
        chosen = sorted(t for t in candidates if counts[t] >= min_cells)
    if len(chosen) < 2:
        raise DataError(f"PERT-unseen needs >= 2 targets with >= {min_cells} cells; found {chosen}. Lower --min-cells.")
    return [(t, condition == t) for t in chosen]


def run_pert_unseen(data: ad.AnnData | str | Path, *, methods: Mapping[str, tuple[Any, Any]] | None = None,
                    baselines: bool = True, condition_key: str = "condition", control: str = "control",
                    drop_conditions: Sequence[str] = ("ambiguous",), min_cells: int = 100,
                    targets: Sequence[str] | None = None, preprocess: Any = "log1p", n_top: int = 100,
                    seed: int = 0, device: str = "cpu", out: str | Path | None = None, overwrite: bool = False,
                    progress: bool = True, command: str | None = None, write_predictions: bool = False,
                    plots: bool = True) -> dict[str, Any]:
    """Run PERT-unseen; returns (and writes to ``out``/results.json, results.md, plots/) the report.

    Args:
        methods: label -> (encoder, manipulator) (names, ``{"name": ...}`` dicts); default
            ``{"gene-network": ("identity-encoder", "gene-network")}``.
        baselines: also run :data:`PERT_UNSEEN_BASELINES` (mean-perturbation, nearest-target, control).
        targets: the targets to hold out (default: every one with >= ``min_cells`` cells; an empty list is refused).
        preprocess: applied once to all cells (``"log1p"``: normalize_total + log1p, all genes).
        write_predictions: also write each method's predicted cells to
            ``out/predictions/<method>/<target>.h5ad`` (log-normalised, the metrics' space) for re-scoring.
        plots: with ``out``, write ``plots/<target>.png`` (the first method's predicted vs real mean
            expression) and ``plots/summary_<metric>.png`` (each method per target).
    """
    from .methods import load_dataset

    out_dir = Path(out) if out is not None else None
    if out_dir is not None and (out_dir / "results.json").exists() and not overwrite:
        raise FileExistsError(f"{out_dir / 'results.json'} exists; pass overwrite=True (--overwrite) or another folder.")
    if targets is not None and not list(targets):
        raise DataError("targets is empty: name at least 2 targets to hold out (--targets A,B), or leave it out to "
                        "hold out every target with >= min_cells cells.")
    methods = dict(methods or {"gene-network": ("identity-encoder", "gene-network")})
    if baselines:
        methods.update({k: v for k, v in PERT_UNSEEN_BASELINES.items() if k not in methods})
    adata, dataset = load_dataset(data)
    if condition_key in adata.obs:
        adata = adata[~adata.obs[condition_key].astype(str).isin(list(drop_conditions))]
    from ..data.preprocess import Preprocessing

    recipe = Preprocessing.from_spec(preprocess).fit(adata)
    x, genes, obs = recipe.transform(adata), list(recipe.genes), adata.obs[[condition_key]].copy()
    obs[condition_key] = obs[condition_key].astype(str).astype("category")
    held_out = unseen_target_tasks(obs, condition_key=condition_key, control=control, drop_conditions=drop_conditions,
                                   min_cells=min_cells, targets=targets)
    is_control = (obs[condition_key].astype(str) == control).to_numpy()
    tasks = [Task(name=t, target=t, train=~cells, source=is_control, truth=cells, reference=~cells)
             for t, cells in held_out]
    report: dict[str, Any] = {
        "protocol": "pert-unseen", "status": "running", "command": command, "seed": seed, "n_top": n_top,
        "dataset": {**dataset, "n_cells": int(x.shape[0]), "n_genes": len(genes),
                    "preprocessing": {k: v for k, v in recipe.to_dict().items() if k != "genes"}},
        "split": {"condition_key": condition_key, "control": control, "drop_conditions": list(drop_conditions),
                  "min_cells": min_cells, "source": "all control cells", "held_out": "all cells of one target"},
        "methods": {label: {"encoder": e, "manipulator": m} for label, (e, m) in methods.items()},
        "contexts": [t.name for t in tasks], "results": {label: {} for label in [*methods, NOISE_CEILING]},
        "refused": {label: {} for label in methods}, "degs": {}, "machine": reporting.machine_info(),
        "packages": reporting.package_versions(), "source": reporting.source_revision(),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    run = _UnseenRun(x, obs, genes, report, condition_key=condition_key, control=control, seed=seed, device=device,
                     out_dir=out_dir, write_predictions=write_predictions, plots=plots, main=next(iter(methods)))
    conditions = [str(c) for c in obs[condition_key].cat.categories if str(c) != control]
    run_holdout(x, genes, tasks, [run.holdout_method(label, e, m, conditions) for label, (e, m) in methods.items()],
                n_top=n_top, n_pcs=min(50, len(genes) - 1), seed=seed, pca_float64=True, on_task=run.ceiling,
                on_result=run.record, on_task_done=run.checkpoint, progress=progress, desc="PERT-unseen")
    return finish_report(report, run.bulks, run.real_bulks, out_dir, final=True, plots=plots)


class _UnseenRun:
    """The state of one :func:`run_pert_unseen`: its methods as the loop runs them, and what each unit records."""

    def __init__(self, x: np.ndarray, obs: pd.DataFrame, genes: list[str], report: dict[str, Any], *,
                 condition_key: str, control: str, seed: int, device: str, out_dir: Path | None,
                 write_predictions: bool, plots: bool, main: str) -> None:
        self.x, self.obs, self.genes, self.report = x, obs, genes, report
        self.condition_key, self.control, self.seed, self.device = condition_key, control, seed, device
        self.out_dir, self.write_predictions, self.plots, self.main = out_dir, write_predictions, plots, main
        self.bulks: dict[str, dict[str, np.ndarray]] = {label: {} for label in report["refused"]}
        self.real_bulks: dict[str, np.ndarray] = {}
        if out_dir is not None and plots:
            (out_dir / "plots").mkdir(parents=True, exist_ok=True)

    def _cells(self, mask: np.ndarray) -> ad.AnnData:
        return ad.AnnData(X=self.x[mask], obs=self.obs.loc[mask].copy(), var=pd.DataFrame(index=pd.Index(self.genes)))

    def holdout_method(self, label: str, encoder: Any, manipulator: Any, conditions: list[str]) -> HoldoutMethod:
        def fit(task: Task) -> Any:
            return fit_unseen(encoder, manipulator, self._cells(task.train), condition_key=self.condition_key,
                              control=self.control, held_out=task.target, seed=self.seed, device=self.device)[0]

        def predict(pipeline: Any, task: Task) -> tuple[np.ndarray, ad.AnnData]:
            predicted = pipeline.predict(self._cells(task.source), target=task.target, seed=self.seed)
            return np.asarray(predicted[:, self.genes].X, dtype=np.float64), predicted

        return HoldoutMethod(label, fit, predict, refusals=(ValueError, DataError),
                             precheck=panel_precheck(manipulator, self.genes, conditions))

    def ceiling(self, task: Task, truth: HeldOutTruth) -> None:
        self.real_bulks[task.name] = truth.stim.mean(0)
        self.report["degs"][task.name] = truth.degs
        ceiling, _, _ = noise_ceiling(truth.stim, truth.ctrl, self.genes, degs=truth.degs, n_top=truth.n_top,
                                      space=truth.space, seed=self.seed)
        self.report["results"][NOISE_CEILING][task.name] = {**ceiling, **task.sizes}

    def record(self, result: UnitResult) -> dict[str, Any] | None:
        label, target = result.label, result.task.name
        if result.refused is not None:
            self.report["refused"][label][target] = result.refused
            return None
        self.bulks[label][target] = result.pred.mean(0)
        if self.out_dir is not None and self.write_predictions:
            predicted = result.extra
            predicted.uns["pert_unseen"] = {"method": label, "target": target, "seed": self.seed}
            reporting.write_h5ad(predicted[:, self.genes].copy(),
                                 self.out_dir / "predictions" / safe_name(label) / f"{safe_name(target)}.h5ad")
        if self.out_dir is not None and self.plots and label == self.main:
            self._plot(result)
        row = {**result.record(), **fitted_facts(result.model)}
        self.report["results"][label][target] = row
        return row

    def _plot(self, result: UnitResult) -> None:
        from . import plots as plotting

        truth, target = result.truth, result.task.name
        reporting.atomic_write(self.out_dir / "plots" / f"{safe_name(target)}.png", lambda tmp: plotting.mean_scatter(
            result.pred, truth.stim, self.genes, degs=truth.degs, title=f"{result.label}: {target} (PERT-unseen)",
            path=tmp))

    def checkpoint(self, task: Task) -> None:
        if self.out_dir is not None:
            finish_report(self.report, self.bulks, self.real_bulks, self.out_dir, final=False)
