"""The benchmark runner of EVALUATION.md: splits x (method + baselines) x metrics, written to a folder.

>>> from virtualcell.evaluate import run_benchmark
>>> report = run_benchmark("kang_pbmc_scgen_valid.h5ad", protocol="oos", encoder="pca",
...                        manipulator="latent-arithmetic", out="out/kang-oos")   # doctest: +SKIP

Steps: preprocess the whole dataset once (so real and predicted cells share one log-normalised
space); build the tasks (:mod:`.splits`); for each task fit a fresh pipeline per method on the
task's training cells (the method with the context column in OOS, without it in OOD; one fit per
method for PERT, whose tasks share their training cells), predict the held-out cells from their
control cells, and score them with :func:`.metrics.perturbation_metrics` (DEGs from a Wilcoxon
test of real perturbed vs control cells, shared by all methods). The ``control`` and
``mean-shift`` baselines run in gene space (identity encoder) and, being defined by
EVALUATION.md, use the context column in OOS and OOD alike.

Output folder: ``results.json``, ``results.md``, ``predictions/<unit>.h5ad`` (the method's
predicted cells), ``plots/<unit>.png`` (scGen-style mean scatter) and ``plots/summary_<metric>.png``.
"""

from __future__ import annotations

import dataclasses
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

from ..component import Component
from ..data.preprocess import Preprocessing
from ..execution import progress_bar, seed_everything
from . import report as reporting
from .splits import PROTOCOLS, oos_tasks, pert_tasks

__all__ = ["run_benchmark", "BASELINES", "SUMMARY_METRICS"]

#: label -> (encoder, manipulator) of the baselines run beside every method
BASELINES: dict[str, tuple[str, str]] = {"control": ("identity-encoder", "control"),
                                          "mean-shift": ("identity-encoder", "mean-shift")}
SUMMARY_METRICS = ("r2_mean_top100", "pearson_delta", "edistance_ratio")
FORMAT_VERSION = 1


@dataclasses.dataclass
class _Method:
    """A method to benchmark: how to build its components fresh, and whether it sees the context."""

    label: str
    encoder: Any
    manipulator: Any
    decoder: Any
    sees_context: bool
    description: dict[str, Any] = dataclasses.field(default_factory=dict)


def _fresh(spec: Any, kwargs: Mapping[str, Any] | None, kind: str) -> Component | None:
    """A new component from a name, a ``{"name": ...}`` dict or an instance (rebuilt from its config;
    a fitted encoder or decoder is used as it is, since pipelines never refit those)."""
    from ..pipelines.pipeline import resolve_component

    kwargs = dict(kwargs or {})
    if spec is None:
        if kwargs:
            raise ValueError(f"{kind}_kwargs {sorted(kwargs)} were given but no {kind}; pass {kind}=<name>.")
        return None
    if isinstance(spec, Component):
        if kwargs:
            raise ValueError(f"{kind}_kwargs cannot change a ready-made {type(spec).__name__}; pass its name instead.")
        if spec.is_fitted and kind != "manipulator":
            return spec  # a pre-trained encoder / decoder: pipelines use it as it is, without refitting
        return type(spec).from_config(spec.config)
    if isinstance(spec, str):
        return resolve_component({"name": spec, **kwargs}, kind)
    if isinstance(spec, Mapping):
        return resolve_component({**spec, **kwargs}, kind)
    raise TypeError(f"{kind} must be a registered name, a dict with 'name', or a component; got {type(spec).__name__}.")


def _describe(component: Component | None) -> dict[str, Any] | None:
    from ..registry import registry

    if component is None:
        return None
    try:
        name = registry.name_of(type(component))
    except KeyError:
        name = type(component).__name__
    return {"name": name, "class": type(component).__name__, "config": component.config_dict()}


def _method(encoder, manipulator, decoder, kwargs: Mapping[str, Mapping[str, Any] | None], sees_context: bool,
            label: str | None = None) -> _Method:
    built = {role: _fresh(spec, kwargs.get(role), role)
             for role, spec in (("encoder", encoder), ("manipulator", manipulator), ("decoder", decoder))}
    description = {role: _describe(c) for role, c in built.items()}
    if label is None:
        label = "+".join(d["name"] for d in description.values() if d)
    specs = {role: (spec if isinstance(spec, Component) or spec is None else
                    {**({"name": spec} if isinstance(spec, str) else dict(spec)), **dict(kwargs.get(role) or {})})
             for role, spec in (("encoder", encoder), ("manipulator", manipulator), ("decoder", decoder))}
    return _Method(label, specs["encoder"], specs["manipulator"], specs["decoder"], sees_context, description)


def _load(data: ad.AnnData | str | Path) -> tuple[ad.AnnData, dict[str, Any]]:
    if isinstance(data, ad.AnnData):
        digest = hashlib.sha256()
        digest.update(str(data.shape).encode())
        digest.update("\n".join(map(str, data.obs_names)).encode())
        digest.update("\n".join(map(str, data.var_names)).encode())
        return data, {"path": None, "sha256": None, "fingerprint": digest.hexdigest()}
    path = Path(data).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"No dataset at {path}; pass the path of an .h5ad file.")
    return ad.read_h5ad(path), {"path": str(path.resolve()), "sha256": reporting.sha256_file(path)}


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


def _means(per_context: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    keys = [k for k, v in next(iter(per_context.values())).items() if isinstance(v, (int, float)) and not k.startswith("n_")]
    means: dict[str, Any] = {"n_contexts": len(per_context)}
    for key in keys:
        values = np.array([m[key] for m in per_context.values() if m.get(key) is not None], dtype=float)
        values = values[np.isfinite(values)]
        means[key] = float(values.mean()) if values.size else None
    return means


def _fit(method: _Method, train: ad.AnnData, *, condition_key: str, control: str, context_key: str | None,
         seed: int, device: str, progress: bool):
    """A fresh pipeline of ``method`` fitted on ``train`` (seeded); returns it and the seconds it took."""
    from ..pipelines.perturbation import PerturbationPipeline

    pipeline = PerturbationPipeline(encoder=_fresh(method.encoder, None, "encoder"),
                                    manipulator=_fresh(method.manipulator, None, "manipulator"),
                                    decoder=_fresh(method.decoder, None, "decoder"), preprocess=None, device=device)
    seed_everything(seed)
    start = time.perf_counter()
    pipeline.fit(train, condition_key=condition_key, control=control, context_key=context_key, seed=seed,
                 progress=progress)
    return pipeline, time.perf_counter() - start


def _restore_threads(threads: int) -> None:
    """Undo libraries that change torch's CPU thread count behind our back (scanpy's numba-based
    Wilcoxon test raises it to all cores, which on a shared machine makes torch spin-wait)."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _write_prediction(path: Path, pred: np.ndarray, obs: pd.DataFrame, genes: list[str], info: dict[str, Any]) -> None:
    """The predicted cells [n, genes] (log-normalised), obs as the pipeline returned it (condition = target)."""
    out = ad.AnnData(X=pred.astype(np.float32), obs=obs.copy(), var=pd.DataFrame(index=pd.Index(genes, dtype=str)))
    out.uns["benchmark"] = {k: v for k, v in reporting.json_clean(info).items() if v is not None}
    reporting.write_h5ad(out, path)


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
        baselines: also run ``control`` and ``mean-shift``.
        n_top: number of DEGs for the ``*_top{n_top}`` metrics.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` for every pipeline.
        command: the command line to record (the CLI fills it in).
    """
    from . import metrics

    protocol = protocol.lower()
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown protocol {protocol!r}; choose one of {PROTOCOLS}.")
    out_dir = Path(out) if out is not None else None
    if out_dir is not None and (out_dir / "results.json").exists() and not overwrite:
        raise FileExistsError(f"{out_dir / 'results.json'} exists; pass overwrite=True (--overwrite) or another out folder.")

    adata, dataset = _load(data)
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

    method = _method(encoder, manipulator, decoder,
                     {"encoder": encoder_kwargs, "manipulator": manipulator_kwargs, "decoder": decoder_kwargs},
                     sees_context=method_context is not None)
    methods = [method] + ([_method(e, m, None, {}, baseline_context is not None, label=label)
                           for label, (e, m) in BASELINES.items()] if baselines else [])
    if len({m.label for m in methods}) < len(methods):
        method.label = f"method:{method.label}"

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
        "baselines": [m.label for m in methods[1:]],
        "seed": seed, "n_top": n_top, "device": device,
        "contexts": [t.name for t in tasks], "results": {m.label: {} for m in methods}, "means": {},
        "degs": {}, "machine": reporting.machine_info(), "packages": reporting.package_versions(),
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
    bar = progress_bar(tasks, desc=f"{protocol.upper()} {method.label}", enabled=progress)
    for task in bar:
        bar.set_postfix_str(task.name)
        stim, ctrl = x[task.truth].astype(np.float64), x[task.source].astype(np.float64)
        degs = metrics.top_degs(stim, ctrl, genes, n=n_top)
        _restore_threads(threads)
        report["degs"][task.name] = degs
        for m in methods:
            context_column = method_context if m is method else baseline_context
            columns = [condition_key] + ([context_column] if context_column else [])
            train_key = hashlib.sha256(np.packbits(task.train).tobytes()).digest()
            if m.label not in fitted or fitted[m.label][0] != train_key:  # PERT: one fit serves every task
                pipeline, seconds_train = _fit(m, _subset(x, obs, genes, task.train, columns), condition_key=condition_key,
                                               control=control, context_key=context_column, seed=seed, device=device,
                                               progress=progress)
                fitted[m.label] = (train_key, pipeline, seconds_train)
            _, pipeline, seconds_train = fitted[m.label]
            start = time.perf_counter()
            predicted = pipeline.predict(_subset(x, obs, genes, task.source, columns), target=task.target, seed=seed)
            seconds_predict = time.perf_counter() - start
            pred = _aligned(predicted, genes)
            scores = metrics.perturbation_metrics(pred, stim, ctrl, genes, n_top=n_top, degs=degs)
            _restore_threads(threads)
            report["results"][m.label][task.name] = {**scores, "seconds_train": seconds_train,
                                                     "seconds_predict": seconds_predict, **task.sizes}
            if m is method and out_dir is not None:
                name = _safe_name(task.name)
                _write_prediction(out_dir / "predictions" / f"{name}.h5ad", pred, predicted.obs, genes,
                                  {"method": m.label, "unit": task.name, "target": task.target, "protocol": protocol,
                                   "seed": seed})
                if plots:
                    from . import plots as plotting

                    reporting.atomic_write(out_dir / "plots" / f"{name}.png", lambda tmp: plotting.mean_scatter(
                        pred, stim, genes, degs=degs, title=f"{m.label}: {task.name} ({protocol.upper()})", path=tmp))
        report["means"] = {label: _means(per) for label, per in report["results"].items() if per}
        if out_dir is not None:
            _write_reports(out_dir, report)
    report["status"] = "complete"
    report["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    if out_dir is not None:
        if plots:
            from . import plots as plotting

            for metric in SUMMARY_METRICS:
                key = metric.replace("top100", f"top{n_top}")
                reporting.atomic_write(out_dir / "plots" / f"summary_{key}.png",
                                       lambda tmp: plotting.metrics_bar(report["results"], key, path=tmp))
        _write_reports(out_dir, report)
    return reporting.json_clean(report)


def _write_reports(out_dir: Path, report: dict[str, Any]) -> None:
    reporting.write_json(out_dir / "results.json", report)
    reporting.write_text(out_dir / "results.md", reporting.markdown_report(report))
