"""The benchmark runner of EVALUATION.md: splits x (method + baselines) x metrics, written to a folder.

>>> from virtualcell.evaluate import run_benchmark
>>> report = run_benchmark("kang_pbmc_scgen_valid.h5ad", protocol="oos", encoder="pca",
...                        manipulator="latent-arithmetic", out="out/kang-oos")   # doctest: +SKIP

Steps: preprocess the whole dataset once (so real and predicted cells share one log-normalised
space); build the tasks (:mod:`.splits`); for each task fit a fresh pipeline per method on the
task's training cells (the method with the context column in OOS, without it in OOD; one fit per
method for PERT, whose tasks share their training cells), predict the held-out cells from their
control cells, and score them with :func:`.metrics.perturbation_metrics` (EVALUATION.md v2: DEGs from
a Wilcoxon test of real perturbed vs control cells, shared by all methods; energy distance and MMD in a
50-PC PCA fitted once per task on ``Task.reference``, the cells outside the held-out unit).
Beside the method: the ``control`` and ``mean-shift`` baselines (gene space, identity encoder; being
defined by EVALUATION.md they use the context column in OOS and OOD alike), for PERT also
``mean-perturbation`` (the average response of all training targets), and the ``noise-ceiling`` row
(a seeded random half of the real cells against the other half). PERT adds ``discrimination`` per
target. With ``n_samples >= 2`` the method's sampled populations give ``coverage90`` and the interval
width (:mod:`.scoring`, :mod:`.calibration`).

Output folder (:mod:`.outputs`): ``results.json`` (with ``means`` and ``medians`` over units),
``results.md``, ``predictions/<unit>.h5ad`` (the method's predicted cells), ``plots/<unit>.png``
(scGen-style mean scatter) and ``plots/summary_<metric>.png``.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from ..data.preprocess import Preprocessing
from ..execution import progress_bar
from . import report as reporting
from .distribution import MAX_CELLS
from .methods import fit_method, load_dataset, make_method
from .outputs import write_outputs, write_reports
from .select_candidates import is_auto
from .splits import PROTOCOLS, oos_tasks, pert_tasks

__all__ = ["run_benchmark", "BASELINES", "PERT_BASELINES", "SUMMARY_METRICS"]

#: label -> (encoder, manipulator) of the baselines run beside every method
BASELINES: dict[str, tuple[str, str]] = {"control": ("identity-encoder", "control"),
                                          "mean-shift": ("identity-encoder", "mean-shift")}
#: PERT only: the average response of all training targets, whatever the target
PERT_BASELINES: dict[str, tuple[str, str]] = {"mean-perturbation": ("identity-encoder", "mean-perturbation")}
SUMMARY_METRICS = ("r2_mean_top100", "pearson_delta", "edistance_ratio", "std_ratio_top100")
FORMAT_VERSION = 2


def _prepare(adata: ad.AnnData, preprocess: Any) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """Preprocess every cell once: dense log-normalised ``x`` [n, genes] and the gene names."""
    recipe = Preprocessing.from_spec(preprocess).fit(adata)
    x = recipe.transform(adata)
    return x, list(recipe.genes), recipe.to_dict()


def _subset(x: np.ndarray, obs: pd.DataFrame, genes: list[str], mask: np.ndarray, columns: list[str]) -> ad.AnnData:
    """An AnnData of the ``mask`` cells holding only ``columns`` of ``obs`` (what a method may see)."""
    sub_obs = obs.loc[mask, columns].copy()
    for column in columns:
        sub_obs[column] = sub_obs[column].astype(str).astype("category")
    return ad.AnnData(X=x[mask], obs=sub_obs, var=pd.DataFrame(index=pd.Index(genes, dtype=str)))


def _aligned(predicted: ad.AnnData, genes: list[str]) -> np.ndarray:
    names = list(map(str, predicted.var_names))
    if names == genes:
        return np.asarray(predicted.X, dtype=np.float64)
    missing = sorted(set(genes) - set(names))
    if missing:
        raise ValueError(f"The method's decoder does not output genes {missing[:10]}; its output_features must "
                         "cover the benchmark's genes.")
    return np.asarray(predicted[:, genes].X, dtype=np.float64)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or "unit"


def _means(per_context: Mapping[str, Mapping[str, Any]], reduce=np.mean) -> dict[str, Any]:
    """``reduce`` (mean, or median) of every numeric metric over the contexts, NaN and None left out."""
    keys = [k for k, v in next(iter(per_context.values())).items() if isinstance(v, (int, float)) and not k.startswith("n_")]
    means: dict[str, Any] = {"n_contexts": len(per_context)}
    for key in keys:
        values = np.array([m[key] for m in per_context.values() if m.get(key) is not None], dtype=float)
        values = values[np.isfinite(values)]
        means[key] = float(reduce(values)) if values.size else None
    return means


def _summaries(report: dict[str, Any]) -> None:
    """Fill ``means`` and ``medians`` over the units (a ratio whose denominator is noise can dominate a mean)."""
    report["means"] = {label: _means(per) for label, per in report["results"].items() if per}
    report["medians"] = {label: _means(per, np.median) for label, per in report["results"].items() if per}


def _restore_threads(threads: int) -> None:
    """Undo libraries that change torch's CPU thread count behind our back (scanpy's numba-based
    Wilcoxon test raises it to all cores, which on a shared machine makes torch spin-wait)."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def run_benchmark(
    data: ad.AnnData | str | Path,
    protocol: str = "oos",
    *,
    encoder: Any = "pca",
    manipulator: Any = "latent-arithmetic",
    decoder: Any = None,
    encoder_kwargs: Mapping[str, Any] | None = None,
    manipulator_kwargs: Mapping[str, Any] | None = None,
    decoder_kwargs: Mapping[str, Any] | None = None,
    context_key: str = "cell_type",
    condition_key: str = "condition",
    control: str = "control",
    target: str = "stimulated",
    contexts: Sequence[str] | None = None,
    exclude_contexts: Sequence[str] = (),
    replicate_key: str = "bio_rep",
    holdout: str = "rep_3",
    train_replicates: Sequence[str] | None = None,
    drop_conditions: Sequence[str] = ("ambiguous",),
    min_cells: int | None = None,
    seed: int = 0,
    preprocess: Any = None,
    out: str | Path | None = None,
    baselines: bool = True,
    n_top: int = 100,
    device: str = "cpu",
    plots: bool = True,
    progress: bool = True,
    overwrite: bool = False,
    command: str | None = None,
    n_samples: int = 1,
    n_pcs: int = 50,
) -> dict[str, Any]:
    """Run one protocol of EVALUATION.md for a method (+ baselines); returns the ``results.json`` content.

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
        replicate_key, holdout, train_replicates, drop_conditions: the PERT split (see :func:`.splits.pert_tasks`).
        preprocess: ``None`` (X is log-normalised), ``"log1p"``, ``"kang-full"`` or a dict; applied once
            to every cell before splitting; methods then run with ``preprocess=None``.
        out: output folder (None: write nothing); an existing ``results.json`` needs ``overwrite=True``.
        baselines: also run ``control`` and ``mean-shift`` (and ``mean-perturbation`` for PERT). The
            ``noise-ceiling`` row (a random half of S against the other half) is always written.
        n_top: number of DEGs for the ``*_top{n_top}`` metrics.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` for every pipeline.
        command: the command line to record (the CLI fills it in).
        n_samples: with ``n_samples >= 2`` the method also predicts that many populations per unit
            (:func:`.calibration.population_samples`) and reports ``coverage90`` and ``interval_width90``
            (top DEGs) and their ``_all`` (every gene) forms; the point metrics always score the
            central ``n_samples=1`` prediction.
        n_pcs: components of the PCA (seed ``seed``) fitted on each unit's reference cells (outside it)
            in which ``edistance_ratio`` and ``mmd_ratio`` are computed.
    """
    from . import metrics
    from .discrimination import discrimination
    from .distribution import fit_pca_space
    from .scoring import NOISE_CEILING, noise_ceiling, pipeline_calibration

    protocol = protocol.lower()
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown protocol {protocol!r}; choose one of {PROTOCOLS}.")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1 (2 or more to measure interval calibration); got {n_samples}.")
    out_dir = Path(out) if out is not None else None
    if out_dir is not None and (out_dir / "results.json").exists() and not overwrite:
        raise FileExistsError(f"{out_dir / 'results.json'} exists; pass overwrite=True (--overwrite) or another out folder.")

    adata, dataset = load_dataset(data)
    x, genes, recipe = _prepare(adata, preprocess)
    obs = adata.obs
    if protocol == "pert":
        tasks = pert_tasks(obs, condition_key=condition_key, control=control, replicate_key=replicate_key,
                           holdout=holdout, train_replicates=train_replicates, drop_conditions=drop_conditions,
                           min_cells=100 if min_cells is None else min_cells, targets=contexts)
        method_context = baseline_context = None
    else:
        tasks = oos_tasks(obs, context_key=context_key, condition_key=condition_key, control=control, target=target,
                          contexts=contexts, exclude_contexts=exclude_contexts, min_cells=2 if min_cells is None else min_cells)
        method_context = context_key if protocol == "oos" else None
        baseline_context = context_key
    del adata

    method = make_method(encoder, manipulator, decoder,
                         {"encoder": encoder_kwargs, "manipulator": manipulator_kwargs, "decoder": decoder_kwargs},
                         sees_context=method_context is not None)
    baseline_specs = {**BASELINES, **(PERT_BASELINES if protocol == "pert" else {})} if baselines else {}
    methods = [method] + [make_method(e, m, None, {}, baseline_context is not None, label=label)
                          for label, (e, m) in baseline_specs.items()]
    if len({m.label for m in methods} | {NOISE_CEILING}) < len(methods) + 1:
        method.label = f"method:{method.label}"
    labels = [m.label for m in methods]

    report: dict[str, Any] = {
        "format_version": FORMAT_VERSION, "protocol": protocol, "status": "running",
        "dataset": {**dataset, "n_cells": int(x.shape[0]), "n_genes": len(genes),
                    "preprocess": preprocess if preprocess is None or isinstance(preprocess, str) else "custom",
                    "preprocessing": {k: v for k, v in recipe.items() if k != "genes"}},
        "split": {"condition_key": condition_key, "control": control,
                  **({"replicate_key": replicate_key, "holdout": holdout, "train_replicates": train_replicates,
                      "drop_conditions": list(drop_conditions)} if protocol == "pert" else
                     {"context_key": context_key, "target": target, "exclude_contexts": list(exclude_contexts)}),
                  "method_sees_context": method.sees_context, "baselines_see_context": baseline_context is not None},
        "method": {"label": method.label, "components": method.description},
        "baselines": [m.label for m in methods[1:]], "noise_ceiling": NOISE_CEILING,
        "metrics": {"version": 2, "n_pcs": n_pcs, "pca": "randomised SVD, seeded, fitted on the cells outside the "
                    "held-out unit (Task.reference)", "max_cells_pairwise": MAX_CELLS, "n_samples": n_samples},
        "seed": seed, "n_top": n_top, "device": device,
        "contexts": [t.name for t in tasks], "results": {label: {} for label in [*labels, NOISE_CEILING]},
        "means": {}, "medians": {}, "degs": {}, "machine": reporting.machine_info(), "packages": reporting.package_versions(),
        "source": reporting.source_revision(),
        "command": command, "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if out_dir is not None:
        for folder, pattern in (("predictions", "*.h5ad"), ("plots", "*.png")):
            (out_dir / folder).mkdir(parents=True, exist_ok=True)
            for stale in (out_dir / folder).glob(pattern):
                stale.unlink()

    import torch

    threads = torch.get_num_threads()
    fitted: dict[str, tuple[bytes, Any, float]] = {}
    space_cache: dict[bytes, Any] = {}
    bulks: dict[str, dict[str, np.ndarray]] = {label: {} for label in report["results"]}
    real_bulks: dict[str, np.ndarray] = {}
    half_bulks: dict[str, np.ndarray] = {}
    bar = progress_bar(tasks, desc=f"{protocol.upper()} {method.label}", enabled=progress)
    for task in bar:
        bar.set_postfix_str(task.name)
        stim, ctrl = x[task.truth].astype(np.float64), x[task.source].astype(np.float64)
        degs = metrics.top_degs(stim, ctrl, genes, n=n_top)
        _restore_threads(threads)
        report["degs"][task.name] = degs
        reference = task.reference if task.reference is not None else task.train
        ref_key = _mask_key(reference)
        if ref_key not in space_cache:   # PERT: one reference for every target
            space_cache = {ref_key: fit_pca_space(x[reference], n_pcs, seed)}
        space = space_cache[ref_key]
        for m in methods:
            context_column = method_context if m is method else baseline_context
            columns = [condition_key] + ([context_column] if context_column else [])
            if protocol == "pert" and m is method and is_auto(m.manipulator):
                columns.append(replicate_key)   # auto: inner leave-one-replicate-out over the training replicates
            train_key = _mask_key(task.train)
            if m.label not in fitted or fitted[m.label][0] != train_key:  # PERT: one fit serves every task
                pipeline, seconds_train = fit_method(m, _subset(x, obs, genes, task.train, columns),
                                                     condition_key=condition_key, control=control,
                                                     context_key=context_column, seed=seed, device=device,
                                                     progress=progress)
                fitted[m.label] = (train_key, pipeline, seconds_train)
                if is_auto(m.manipulator):   # what the inner CV chose on this task's training cells
                    chosen = pipeline.metadata["selection"]
                    report.setdefault("selection", {})[task.name] = {
                        k: chosen.get(k) for k in ("winner", "table", "ensemble_weights", "spread", "folds", "seconds")}
            _, pipeline, seconds_train = fitted[m.label]
            source_cells = _subset(x, obs, genes, task.source, columns)
            start = time.perf_counter()
            predicted = pipeline.predict(source_cells, target=task.target, seed=seed)
            seconds_predict = time.perf_counter() - start
            pred = _aligned(predicted, genes)
            scores = metrics.perturbation_metrics(pred, stim, ctrl, genes, n_top=n_top, degs=degs, reference=space,
                                                  seed=seed)
            if m is method and n_samples > 1:
                scores.update(pipeline_calibration(pipeline, source_cells, task.target, n_samples, seed, stim, genes,
                                                   degs))
            _restore_threads(threads)
            bulks[m.label][task.name] = pred.mean(axis=0)
            report["results"][m.label][task.name] = {**scores, "seconds_train": seconds_train,
                                                     "seconds_predict": seconds_predict, **task.sizes}
            if m is method and out_dir is not None:
                write_outputs(out_dir, task, m.label, pred, predicted.obs, stim, genes, degs, protocol, seed, plots)
        ceiling, half_a, half_b = noise_ceiling(stim, ctrl, genes, degs=degs, n_top=n_top, space=space, seed=seed)
        report["results"][NOISE_CEILING][task.name] = {**ceiling, **task.sizes}
        bulks[NOISE_CEILING][task.name], half_bulks[task.name] = half_a.mean(axis=0), half_b.mean(axis=0)
        real_bulks[task.name] = stim.mean(axis=0)
        _summaries(report)
        if out_dir is not None:
            write_reports(out_dir, report)
    if protocol == "pert" and len(tasks) >= 2:
        for label, predicted_bulks in bulks.items():
            truth = half_bulks if label == NOISE_CEILING else real_bulks
            for name, score in discrimination(predicted_bulks, truth).items():
                report["results"][label][name]["discrimination"] = score
        _summaries(report)
    report["status"] = "complete"
    report["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    if out_dir is not None:
        if plots:
            from . import plots as plotting

            for metric in SUMMARY_METRICS:
                key = metric.replace("top100", f"top{n_top}")
                reporting.atomic_write(out_dir / "plots" / f"summary_{key}.png",
                                       lambda tmp: plotting.metrics_bar(report["results"], key, path=tmp))
        write_reports(out_dir, report)
    return reporting.json_clean(report)


def _mask_key(mask: np.ndarray) -> bytes:
    return hashlib.sha256(np.packbits(mask).tobytes()).digest()
