"""The benchmark runner of docs/evaluation.md: splits x (method + baselines) x metrics, written to a folder.

>>> from virtualcell.evaluate import run_benchmark
>>> report = run_benchmark("kang_pbmc_scgen_valid.h5ad", protocol="oos", encoder="pca",
...                        manipulator="latent-arithmetic", out="out/kang-oos")   # doctest: +SKIP

Steps (the loop is :func:`virtualcell.pipelines.holdout.run_holdout`): preprocess the whole dataset once (so real and predicted cells share one log-normalised
space); build the tasks (:mod:`virtualcell.pipelines.splits`); for each task fit a fresh pipeline per method on the
task's training cells (the method with the context column in OOS, without it in OOD; one fit per
method for PERT, whose tasks share their training cells), predict the held-out cells from their
control cells, and score them with :func:`virtualcell.metrics.score_prediction` (docs/evaluation.md v2: DEGs from
a Wilcoxon test of real perturbed vs control cells, shared by all methods; energy distance and MMD in a
50-PC PCA fitted once per task on ``Task.reference``, the cells outside the held-out unit).
Beside the method: the ``control`` and ``mean-shift`` baselines (gene space, identity encoder; being
defined by docs/evaluation.md they use the context column in OOS and OOD alike), for PERT also
``mean-perturbation`` (the average response of all training targets), and the ``noise-ceiling`` row
(a seeded random half of the real cells against the other half). PERT adds ``discrimination`` per
target. With ``n_samples >= 2`` the method's sampled populations give ``coverage90`` and the interval
width (:mod:`virtualcell.metrics.ceiling`).

Output folder (:mod:`.outputs`): ``results.json`` (with ``means`` and ``medians`` over units),
``results.md``, ``predictions/<unit>.h5ad`` (the method's predicted cells), ``plots/<unit>.png``
(scGen-style mean scatter) and ``plots/summary_<metric>.png``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anndata as ad

from ..errors import DataError
from ..metrics.ceiling import NOISE_CEILING
from ..metrics.conformal import LEVELS
from ..metrics.discrimination import discrimination
from ..pipelines.holdout import run_holdout
from ..pipelines.splits import PROTOCOLS, oos_tasks, pert_tasks
from .benchmark_report import SUMMARY_METRICS, complete_report, new_report
from .benchmark_run import BenchmarkRun
from .cells import disk_cells, prepare_cells
from .conformal import ConformalScorer
from .methods import load_dataset, make_method
from .outputs import clear_outputs
from .summary import summarise

__all__ = ["run_benchmark", "BASELINES", "PERT_BASELINES", "SUMMARY_METRICS"]

#: label -> (encoder, manipulator) of the baselines run beside every method
BASELINES: dict[str, tuple[str, str]] = {"control": ("identity-encoder", "control"),
                                          "mean-shift": ("identity-encoder", "mean-shift")}
#: PERT only: the average response of all training targets, whatever the target
PERT_BASELINES: dict[str, tuple[str, str]] = {"mean-perturbation": ("identity-encoder", "mean-perturbation")}


def run_benchmark(
    data: ad.AnnData | str | Path, protocol: str = "oos", *, encoder: Any = "pca",
    manipulator: Any = "latent-arithmetic", decoder: Any = None, encoder_kwargs: Mapping[str, Any] | None = None,
    manipulator_kwargs: Mapping[str, Any] | None = None, decoder_kwargs: Mapping[str, Any] | None = None,
    context_key: str = "cell_type", condition_key: str = "condition", control: str = "control",
    target: str = "stimulated", contexts: Sequence[str] | None = None, exclude_contexts: Sequence[str] = (),
    replicate_key: str = "bio_rep", holdout: str = "rep_3", train_replicates: Sequence[str] | None = None,
    drop_conditions: Sequence[str] = ("ambiguous",), min_cells: int | None = None, seed: int = 0,
    preprocess: Any = None, out: str | Path | None = None, baselines: bool = True, n_top: int = 100,
    device: str = "cpu", plots: bool = True, progress: bool = True, overwrite: bool = False,
    command: str | None = None, n_samples: int = 1, n_pcs: int = 50, conformal: bool = False,
    from_disk: bool = False,
) -> dict[str, Any]:
    """Run one protocol of docs/evaluation.md for a method (+ baselines); returns the ``results.json`` content.

    Args:
        data: an AnnData or the path of an ``.h5ad``.
        protocol: ``"oos"`` (held-out context, method sees the context column), ``"ood"`` (same
            split, the method never sees it) or ``"pert"`` (Papalexi: held-out replicate, one model
            for all targeted genes).
        encoder, manipulator, decoder: registered names, ``{"name": ..., **kwargs}`` dicts or
            components (copied fresh for every fit); ``decoder=None`` uses the encoder's own.
        encoder_kwargs, manipulator_kwargs, decoder_kwargs: init options added to a name.
        context_key, condition_key, control, target: obs columns and labels (OOS / OOD).
        contexts: the units to hold out (cell types; targeted genes for PERT); None: every one with
            at least ``min_cells`` cells (default 2 for OOS / OOD, 100 for PERT), minus ``exclude_contexts``.
        replicate_key, holdout, train_replicates, drop_conditions: the PERT split (see :func:`virtualcell.pipelines.splits.pert_tasks`).
        preprocess: ``None`` (X is log-normalised), ``"log1p"``, ``"kang-full"`` or a dict; applied once
            to every cell before splitting; methods then run with ``preprocess=None``.
        out: output folder (None: write nothing); an existing ``results.json`` needs ``overwrite=True``.
        baselines: also run ``control`` and ``mean-shift`` (and ``mean-perturbation`` for PERT). The
            ``noise-ceiling`` row (a random half of S against the other half) is always written.
        n_top: number of DEGs for the ``*_top{n_top}`` metrics.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` for every pipeline.
        command: the command line to record (the CLI fills it in).
        n_samples: with ``n_samples >= 2`` the method also predicts that many populations per unit
            (:func:`virtualcell.metrics.population_samples`) and reports ``coverage90`` and ``interval_width90``
            (top DEGs) and their ``_all`` (every gene) forms; the point metrics always score the
            central ``n_samples=1`` prediction.
        conformal: also give every method (baselines included) split-conformal intervals of its predicted
            mean, calibrated on each unit's training cells by inner folds (K extra fits per method and
            training set; :mod:`.conformal`), and report ``conformal_coverage80/90/95`` and widths.
        n_pcs: components of the PCA (seed ``seed``) fitted on each unit's reference cells (outside it)
            in which ``edistance_ratio`` and ``mmd_ratio`` are computed.
        from_disk: ``data`` is a store (h5ad / zarr path, folder or list of shards) never read whole: each
            method is fitted from disk on its training cells (``PerturbationPipeline.fit`` of a ``DiskCells``),
            only a unit's cells are read into memory, the reference PCA from a streamed covariance. ``X`` is used as
            stored with ``preprocess`` None; a recipe is applied in one streamed pass that writes a CSR copy
            into a temporary folder in ``out`` (deleted at the end); ``conformal`` is refused (docs/scale.md).
    """
    protocol = protocol.lower()
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown protocol {protocol!r}; choose one of {PROTOCOLS}.")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1 (2 or more to measure interval calibration); got {n_samples}.")
    out_dir = Path(out) if out is not None else None
    if out_dir is not None and (out_dir / "results.json").exists() and not overwrite:
        raise FileExistsError(f"{out_dir / 'results.json'} exists; pass overwrite=True (--overwrite) or another out folder.")

    if from_disk:
        if conformal:
            raise DataError("conformal=True (--conformal) needs the cells in memory (its inner folds refit every "
                            "method on in-memory cells); run it without from_disk (--from-disk).")
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
        x, obs, genes, recipe, dataset = disk_cells(data, preprocess, out_dir, progress)
    else:
        adata, dataset = load_dataset(data)
        x, genes, recipe = prepare_cells(adata, preprocess)
        obs = adata.obs
        del adata
    if protocol == "pert":
        tasks = pert_tasks(obs, condition_key=condition_key, control=control, replicate_key=replicate_key,
                           holdout=holdout, train_replicates=train_replicates, drop_conditions=drop_conditions,
                           min_cells=100 if min_cells is None else min_cells, targets=contexts)
        method_context = baseline_context = None
        split = {"replicate_key": replicate_key, "holdout": holdout, "train_replicates": train_replicates,
                 "drop_conditions": list(drop_conditions)}
    else:
        tasks = oos_tasks(obs, context_key=context_key, condition_key=condition_key, control=control, target=target,
                          contexts=contexts, exclude_contexts=exclude_contexts, min_cells=2 if min_cells is None else min_cells)
        method_context = context_key if protocol == "oos" else None
        baseline_context = context_key
        split = {"context_key": context_key, "target": target, "exclude_contexts": list(exclude_contexts)}

    method = make_method(encoder, manipulator, decoder,
                         {"encoder": encoder_kwargs, "manipulator": manipulator_kwargs, "decoder": decoder_kwargs},
                         sees_context=method_context is not None)
    baseline_specs = {**BASELINES, **(PERT_BASELINES if protocol == "pert" else {})} if baselines else {}
    methods = [method] + [make_method(e, m, None, {}, baseline_context is not None, label=label)
                          for label, (e, m) in baseline_specs.items()]
    if len({m.label for m in methods} | {NOISE_CEILING}) < len(methods) + 1:
        method.label = f"method:{method.label}"
    report = new_report(
        protocol=protocol, dataset=dataset, n_cells=int(x.shape[0]), genes=genes, preprocess=preprocess, recipe=recipe,
        split={"condition_key": condition_key, "control": control, **split, "method_sees_context": method.sees_context,
               "baselines_see_context": baseline_context is not None},
        method=method, labels=[m.label for m in methods], contexts=[t.name for t in tasks], n_pcs=n_pcs,
        n_samples=n_samples, seed=seed, n_top=n_top, device=device, command=command)
    if from_disk:
        report["metrics"]["pca"] += "; from disk: the same SVD computed from the covariance of one streamed pass"
    if conformal:
        report["conformal"] = {"levels": list(LEVELS), "method": "unit", "unit_level": 0.5, "min_cells": 10,
                               "folds": "leave one training replicate out" if protocol == "pert" else
                               "leave one training context out", "doc": "docs/uncertainty.md"}
    if out_dir is not None:
        clear_outputs(out_dir)
    run = BenchmarkRun(x, obs, genes, report, protocol=protocol, main=method, condition_key=condition_key,
                       control=control, replicate_key=replicate_key, main_context=method_context,
                       other_context=baseline_context, seed=seed, device=device, progress=progress,
                       n_samples=n_samples, out_dir=out_dir, plots=plots,
                       conformal=ConformalScorer(
                           x, obs, genes, fold_key=replicate_key if protocol == "pert" else context_key,
                           replicate=protocol == "pert", condition_key=condition_key, control=control, n_top=n_top,
                           seed=seed) if conformal else None)
    run_holdout(x, genes, tasks, [run.holdout_method(m) for m in methods], n_top=n_top, n_pcs=n_pcs, seed=seed,
                on_task=run.ceiling, on_result=run.record, on_task_done=run.checkpoint, progress=progress,
                desc=f"{protocol.upper()} {method.label}")
    if protocol == "pert" and len(tasks) >= 2:
        for label, predicted_bulks in run.bulks.items():
            truth = run.half_bulks if label == NOISE_CEILING else run.real_bulks
            for name, score in discrimination(predicted_bulks, truth).items():
                report["results"][label][name]["discrimination"] = score
        summarise(report)
    return complete_report(report, out_dir, plots)
