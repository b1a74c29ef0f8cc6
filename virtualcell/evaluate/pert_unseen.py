"""Task PERT-unseen: predict the knockout of a gene never perturbed in training (leave one target out).

>>> report = run_pert_unseen("papalexi2021_crispr_thp1.h5ad", preprocess="log1p",
...                          out="out/pert-unseen")                      # doctest: +SKIP

Protocol (EVALUATION.md's PERT data and metrics, a new split): drop ``drop_conditions``
(``ambiguous``), preprocess every cell once; for each target ``t`` with at least ``min_cells``
cells (all replicates): train every method on all cells except ``t``'s, predict ``t``'s cells
from the control cells, score against ``t``'s real cells with metrics v2
(:func:`.metrics.perturbation_metrics`; DEGs of real ``t`` vs control, shared by all methods; the
distribution metrics in a 50-PC space fitted on that fold's training cells), plus the noise
ceiling row. The held-out label is handed to ``fit`` as an extra condition (an id without cells).
A method that cannot predict ``t`` (e.g. ``t`` is not a gene of its network) is recorded under
``refused`` with its reason. After all folds, ``discrimination`` (:mod:`.discrimination`) ranks
each method's predicted pseudobulks among the real ones of the targets every method predicted.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from ..data.checks import DataError
from ..execution import progress_bar, seed_everything
from . import report as reporting

__all__ = ["run_pert_unseen", "unseen_target_tasks", "PERT_UNSEEN_BASELINES", "markdown_table"]

#: label -> (encoder, manipulator spec) run beside the method
PERT_UNSEEN_BASELINES: dict[str, tuple[str, Any]] = {
    "mean-perturbation": ("identity-encoder", "mean-perturbation"),
    "nearest-target": ("identity-encoder", "nearest-target"),
    "control": ("identity-encoder", "control"),
}
TABLE_METRICS = ("pearson_delta", "discrimination", "r2_mean_top100", "pearson_delta_top100", "de_overlap_top100",
                 "edistance_ratio", "mmd_ratio", "std_ratio_top100")


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


def _fit(encoder: Any, manipulator: Any, train: ad.AnnData, *, condition_key: str, control: str, held_out: str,
         seed: int, device: str):
    from ..pipelines.perturbation import PerturbationPipeline
    from .methods import fresh

    pipeline = PerturbationPipeline(encoder=fresh(encoder, None, "encoder"), manipulator=fresh(manipulator, None, "manipulator"),
                                    preprocess=None, device=device)
    seed_everything(seed)
    start = time.perf_counter()
    pipeline.fit(train, condition_key=condition_key, control=control, seed=seed, progress=False,
                 extra_conditions=[held_out])
    return pipeline, time.perf_counter() - start


def _safe(name: str) -> str:
    """A file-name-safe version of a label (``gene-network (knn)`` -> ``gene-network_knn``)."""
    import re

    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or "unit"


def _fitted_facts(pipeline) -> dict[str, Any]:
    """What a network manipulator chose on the training targets (its network, the deviation scale)."""
    manipulator, facts = pipeline.manipulator, {}
    if getattr(manipulator, "network_summary", ""):
        facts["network"] = manipulator.network_summary
    if hasattr(manipulator, "scale_used"):
        facts["scale_chosen"] = float(manipulator.scale_used)
        facts["own_effect_chosen"] = float(manipulator.self_used)
    return facts


def _means(per_target: Mapping[str, Mapping[str, Any]], targets: Sequence[str]) -> dict[str, Any]:
    rows = [per_target[t] for t in targets if t in per_target]
    keys = sorted({k for r in rows for k, v in r.items() if isinstance(v, (int, float)) and not k.startswith("n_")})
    out: dict[str, Any] = {"n_targets": len(rows)}
    for key in keys:
        values = np.array([r[key] for r in rows if r.get(key) is not None], dtype=float)
        values = values[np.isfinite(values)]
        out[key] = float(values.mean()) if values.size else None
    return out


def run_pert_unseen(data: ad.AnnData | str | Path, *, methods: Mapping[str, tuple[Any, Any]] | None = None,
                    baselines: bool = True, condition_key: str = "condition", control: str = "control",
                    drop_conditions: Sequence[str] = ("ambiguous",), min_cells: int = 100,
                    targets: Sequence[str] | None = None, preprocess: Any = "log1p", n_top: int = 100,
                    seed: int = 0, device: str = "cpu", out: str | Path | None = None, overwrite: bool = False,
                    progress: bool = True, command: str | None = None, write_predictions: bool = False) -> dict[str, Any]:
    """Run PERT-unseen; returns (and writes to ``out``/results.json, results.md) the report.

    Args:
        methods: label -> (encoder, manipulator) (names, ``{"name": ...}`` dicts); default
            ``{"gene-network": ("identity-encoder", "gene-network")}``.
        baselines: also run :data:`PERT_UNSEEN_BASELINES` (mean-perturbation, nearest-target, control).
        targets: the targets to hold out (default: every one with >= ``min_cells`` cells).
        preprocess: applied once to all cells (``"log1p"``: normalize_total + log1p, all genes).
        write_predictions: also write each method's predicted cells to
            ``out/predictions/<method>/<target>.h5ad`` (log-normalised, the metrics' space) for re-scoring.
    """
    from . import metrics
    from .discrimination import discrimination
    from .distribution import fit_pca_space
    from .methods import load_dataset
    from .scoring import NOISE_CEILING, noise_ceiling

    out_dir = Path(out) if out is not None else None
    if out_dir is not None and (out_dir / "results.json").exists() and not overwrite:
        raise FileExistsError(f"{out_dir / 'results.json'} exists; pass overwrite=True (--overwrite) or another folder.")
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
    tasks = unseen_target_tasks(obs, condition_key=condition_key, control=control, drop_conditions=drop_conditions,
                                min_cells=min_cells, targets=targets)
    is_control = (obs[condition_key].astype(str) == control).to_numpy()
    ctrl = x[is_control].astype(np.float64)
    report: dict[str, Any] = {
        "protocol": "pert-unseen", "status": "running", "command": command, "seed": seed, "n_top": n_top,
        "dataset": {**dataset, "n_cells": int(x.shape[0]), "n_genes": len(genes),
                    "preprocessing": {k: v for k, v in recipe.to_dict().items() if k != "genes"}},
        "split": {"condition_key": condition_key, "control": control, "drop_conditions": list(drop_conditions),
                  "min_cells": min_cells, "source": "all control cells", "held_out": "all cells of one target"},
        "methods": {label: {"encoder": e, "manipulator": m} for label, (e, m) in methods.items()},
        "contexts": [t for t, _ in tasks], "results": {label: {} for label in [*methods, NOISE_CEILING]},
        "refused": {label: {} for label in methods}, "degs": {}, "machine": reporting.machine_info(),
        "packages": reporting.package_versions(), "source": reporting.source_revision(),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    bulks: dict[str, dict[str, np.ndarray]] = {label: {} for label in methods}
    real_bulks: dict[str, np.ndarray] = {}
    import torch

    threads = torch.get_num_threads()
    bar = progress_bar(tasks, desc="PERT-unseen", enabled=progress)
    for target, cells in bar:
        bar.set_postfix_str(target)
        train_mask = ~cells
        stim = x[cells].astype(np.float64)
        real_bulks[target] = stim.mean(0)
        degs = metrics.top_degs(stim, ctrl, genes, n=n_top)
        torch.set_num_threads(threads)
        report["degs"][target] = degs
        space = fit_pca_space(x[train_mask].astype(np.float64), n_pcs=min(50, len(genes) - 1), seed=seed)
        sizes = {"n_train": int(train_mask.sum()), "n_source": int(is_control.sum()), "n_truth": int(cells.sum())}
        ceiling, _, _ = noise_ceiling(stim, ctrl, genes, degs=degs, n_top=n_top, space=space, seed=seed)
        report["results"][NOISE_CEILING][target] = {**ceiling, **sizes}
        train = ad.AnnData(X=x[train_mask], obs=obs.loc[train_mask].copy(), var=pd.DataFrame(index=pd.Index(genes)))
        source = ad.AnnData(X=x[is_control], obs=obs.loc[is_control].copy(), var=pd.DataFrame(index=pd.Index(genes)))
        for label, (encoder, manipulator) in methods.items():
            pipeline, seconds_train = _fit(encoder, manipulator, train, condition_key=condition_key, control=control,
                                           held_out=target, seed=seed, device=device)
            start = time.perf_counter()
            try:
                predicted = pipeline.predict(source, target=target, seed=seed)
            except (ValueError, DataError) as error:
                report["refused"][label][target] = str(error)
                continue
            pred = np.asarray(predicted[:, genes].X, dtype=np.float64)
            seconds_predict = time.perf_counter() - start
            bulks[label][target] = pred.mean(0)
            if write_predictions and out_dir is not None:
                predicted.uns["pert_unseen"] = {"method": label, "target": target, "seed": seed}
                reporting.write_h5ad(predicted[:, genes].copy(),
                                     out_dir / "predictions" / _safe(label) / f"{_safe(target)}.h5ad")
            scores = metrics.perturbation_metrics(pred, stim, ctrl, genes, n_top=n_top, degs=degs, reference=space,
                                                  seed=seed)
            torch.set_num_threads(threads)
            report["results"][label][target] = {**scores, "seconds_train": seconds_train,
                                                "seconds_predict": seconds_predict, **sizes, **_fitted_facts(pipeline)}
        if out_dir is not None:
            _finish(report, bulks, real_bulks, discrimination, out_dir, final=False)
    return _finish(report, bulks, real_bulks, discrimination, out_dir, final=True)


def _finish(report, bulks, real_bulks, discrimination, out_dir: Path | None, final: bool) -> dict[str, Any]:
    """Discrimination over the targets every method predicted, means, and the files."""
    common = [t for t in report["contexts"] if t in real_bulks and all(t in b for b in bulks.values())]
    report["common_targets"] = common
    if len(common) >= 2:
        for label, per in bulks.items():
            for target, score in discrimination({t: per[t] for t in common}, {t: real_bulks[t] for t in common}).items():
                report["results"][label][target]["discrimination"] = score
    report["means"] = {label: _means(per, common) for label, per in report["results"].items() if per}
    report["means_all_predicted"] = {label: _means(per, list(per)) for label, per in report["results"].items() if per}
    if final:
        report["status"] = "complete"
        report["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    report = reporting.json_clean(report)
    if out_dir is not None:
        reporting.write_json(out_dir / "results.json", report)
        reporting.write_text(out_dir / "results.md", markdown_table(report))
    return report


def markdown_table(report: Mapping[str, Any], metrics: Sequence[str] = TABLE_METRICS) -> str:
    """Means over the common targets, then pearson_delta and discrimination per target (markdown)."""
    def fmt(v: Any) -> str:
        return "" if v is None else f"{v:.3f}"

    metrics = [m.replace("top100", f"top{report.get('n_top', 100)}") for m in metrics]
    labels = [label for label in report["results"] if report["means"].get(label)]
    lines = [f"Means over {len(report.get('common_targets', []))} held-out targets predicted by every method "
             f"({', '.join(report.get('common_targets', []))}).", "",
             "| method | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    lines += ["| " + label + " | " + " | ".join(fmt(report["means"][label].get(m)) for m in metrics) + " |" for label in labels]
    lines += ["", "Per target: pearson_delta / discrimination.", "",
              "| target | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for t in report.get("common_targets", []):
        cells = [f"{fmt(report['results'][lab].get(t, {}).get('pearson_delta'))} / "
                 f"{fmt(report['results'][lab].get(t, {}).get('discrimination'))}" for lab in labels]
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    refused = {label: sorted(per) for label, per in report.get("refused", {}).items() if per}
    if refused:
        lines += ["", "Refused (target outside the method's network or unconnected): " +
                  "; ".join(f"{label}: {len(ts)} ({', '.join(ts[:12])})" for label, ts in refused.items())]
    return "\n".join(lines) + "\n"
