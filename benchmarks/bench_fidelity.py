"""Fidelity of ``select``'s inner CV (issue 22 items 1, 2, 5): does the inner ranking carry over to held-out units?

Each dataset is split as the harness splits it (:func:`virtualcell.pipelines.splits.oos_tasks` /
:func:`~virtualcell.pipelines.splits.pert_tasks`, after the harness's preprocessing
:func:`virtualcell.evaluate.cells.prepare_cells`), and the method sees the columns the harness's
``--manipulator auto`` sees. For each distinct outer training set (OOS: one per held-out context; PERT: one
for all targets of the held-out replicate): ``select_pipeline`` on the training cells with the default
candidates (mean-shift, pca+latent-arithmetic, vae+latent-arithmetic; ``n_jobs=1``; full budget: every inner
fit is the final fit); then **every** entry of its table (candidates, stacked ensemble, ``+spread``) is fitted
on the same training cells the way ``select`` fits its winner (:func:`virtualcell.selection.entries.fit_entry`)
and scored on each held-out unit with the harness's scoring (:func:`virtualcell.pipelines.holdout.unit_truth`,
:func:`virtualcell.metrics.score_prediction`). Written per unit, atomically, to
``benchmarks/results/fidelity/<dataset>.json``; ``benchmarks/report_fidelity.py`` renders it.

Where the CPU budget of a run cannot hold the VAE's own 40 epochs, the dataset's spec lowers the VAE
candidate's ``max_epochs`` for the inner *and* the final fits alike (the inner CV stays faithful; the candidate
is then ``vae(max_epochs=N)+latent-arithmetic``); N is chosen from the timing of one fit only and recorded,
with its reason, in the JSON's ``protocol``.

The winner under each rule (``one-se`` = select's default, ``min``, ``rank`` = the old mean rank) is
recomputed from the *inner* table only; the held-out scores are only read to report regret.

Compute: a fit is a deterministic function of its training cells and seed, and the inner fold "all but
A's and c's perturbed cells" of outer unit A is the inner fold of outer unit c too, so fits are cached by
(candidate, cells) within a dataset: 21 inner + 7 outer fits per candidate on Kang valid instead of 49.
``--plan`` prints the distinct fits a dataset needs without fitting anything.

    .venv/bin/python benchmarks/bench_fidelity.py [sim-shared sim-specific kang-valid kang-full papalexi-pert]
    .venv/bin/python benchmarks/bench_fidelity.py --plan kang-full papalexi-pert

Cost (issue 22 item 5; needs both CPU slots): ``select`` with ``n_jobs=2`` on every Kang valid cell against
one full fit of its most expensive candidate (the VAE), written to ``cost.json``:

    .venv/bin/python benchmarks/bench_fidelity.py --cost
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "fidelity"
DATA = Path(os.environ.get("DATA_DIR", ROOT.parent / "shared" / "data"))


@dataclasses.dataclass(frozen=True)
class Spec:
    """One dataset and the harness's protocol settings for it (benchmarks/env.sh, benchmarks/run_selection.sh)."""

    loader: Callable[[], Any]
    protocol: str = "oos"                      # "oos" (hold out each context) or "pert" (hold out one replicate)
    context_key: str = "cell_type"
    condition_key: str = "condition"
    control: str = "control"
    target: str = "stimulated"
    preprocess: Any = None                     # as `virtualcell benchmark --preprocess`
    exclude_contexts: tuple[str, ...] = ()
    replicate_key: str = "bio_rep"             # PERT: the split of pert_tasks (held-out replicate rep_3)
    holdout: str = "rep_3"
    vae_epochs: int | None = None              # None: the VAE's own default (40) in the inner and final fits
    budget_note: str = "VAE at its own 40 epochs"

    def candidates(self) -> list[str]:
        from virtualcell.selection import DEFAULT_CANDIDATES

        if self.vae_epochs is None:
            return list(DEFAULT_CANDIDATES)
        return [c.replace("vae+", f"vae(max_epochs={self.vae_epochs})+") for c in DEFAULT_CANDIDATES]


def _h5ad(name: str) -> Callable[[], Any]:
    def load():
        import anndata as ad
        return ad.read_h5ad(DATA / name)
    return load


def datasets() -> dict[str, Spec]:
    """name -> Spec. Simulations: known truth, a priori settings; the rest: the harness's runs of RESULTS.md."""
    from virtualcell.datasets import simulate_perturbation

    def sim(heterogeneity, seed):
        return lambda: simulate_perturbation(n_cells_per_group=150, n_genes=200, n_cell_types=5,
                                             heterogeneity=heterogeneity, effect_size=1.0, seed=seed)

    return {"sim-shared": Spec(sim(0.3, 11)), "sim-specific": Spec(sim(1.0, 12)),
            "kang-valid": Spec(_h5ad("kang_pbmc_scgen_valid.h5ad")),
            # --preprocess kang-full --context-key cell_type_coarse --exclude-contexts Megakaryocyte,Erythrocyte
            "kang-full": Spec(_h5ad("kang_ifnb_full.h5ad"), context_key="cell_type_coarse", preprocess="kang-full",
                              exclude_contexts=("Megakaryocyte", "Erythrocyte"), vae_epochs=12,
                              budget_note=("VAE max_epochs=12 in the inner and final fits alike, chosen from timing "
                                           "only: one 40-epoch fit on the first outer training set (13,229 cells) "
                                           "took 219 s (1 thread, 2 shared cores) and the run needs 42 distinct "
                                           "VAE fits (2.6 h at 40 epochs) against about 5,300 s of one CPU slot; "
                                           "N = floor(40 x 5300 x 0.7 (fit share) x 0.8 (contention) / 42 / 219). "
                                           "12 epochs of 13k cells are about 1,240 steps of 128 cells, more than "
                                           "the 40 epochs of Kang valid's 2k cells")),
            # pert --preprocess log1p: train on rep_1 and rep_2, predict each target of rep_3 (>= 100 cells)
            "papalexi-pert": Spec(_h5ad("papalexi2021_crispr_thp1.h5ad"), protocol="pert", preprocess="log1p")}


def install_fit_cache(stats: dict):
    """Memoise ``fit_candidate`` on (candidate, training cells, seed); returns the cache (cleared per dataset)."""
    from virtualcell.selection import cv, entries

    original = getattr(cv.fit_candidate, "uncached", cv.fit_candidate)   # one cache layer per dataset
    cache: dict = {}

    def key(candidate, train, kwargs):
        h = hashlib.sha1()
        h.update(json.dumps(candidate.to_dict(), sort_keys=True).encode())
        h.update("\x1f".join(map(str, train.obs_names)).encode())
        x = train.X if not hasattr(train.X, "toarray") else train.X.toarray()
        h.update(np.ascontiguousarray(x, dtype=np.float32).tobytes())
        for column in (kwargs.get("condition_key"), kwargs.get("context_key")):
            if column:
                h.update("\x1f".join(map(str, train.obs[column])).encode())
        h.update(repr(sorted((k, str(v)) for k, v in kwargs.items() if k != "progress")).encode())
        return h.hexdigest()

    def cached(candidate, train, **kwargs):
        k = key(candidate, train, kwargs)
        if k not in cache:
            cache[k] = original(candidate, train, **kwargs)
            stats["fits"] += 1
            stats["fit_seconds"][candidate.label] = stats["fit_seconds"].get(candidate.label, 0.0) + cache[k][1]
        else:
            stats["hits"] += 1
        return cache[k]

    cached.uncached = original
    cv.fit_candidate = cached
    entries.fit_candidate = cached
    return cache


def split(spec: Spec, obs) -> tuple[list, list[str], str | None, str | None]:
    """The harness's tasks, the obs columns ``auto`` sees, and select's context / replicate key."""
    from virtualcell.pipelines.splits import oos_tasks, pert_tasks

    if spec.protocol == "pert":
        tasks = pert_tasks(obs, condition_key=spec.condition_key, control=spec.control,
                           replicate_key=spec.replicate_key, holdout=spec.holdout)
        return tasks, [spec.condition_key, spec.replicate_key], None, spec.replicate_key
    tasks = oos_tasks(obs, context_key=spec.context_key, condition_key=spec.condition_key, control=spec.control,
                      target=spec.target, exclude_contexts=spec.exclude_contexts)
    return tasks, [spec.condition_key, spec.context_key], spec.context_key, None


def groups(tasks: list) -> list[list]:
    """Tasks grouped by their training cells (OOS: one per task; PERT: one for all), in order."""
    from virtualcell.pipelines.holdout import mask_key

    out: dict[bytes, list] = {}
    for task in tasks:
        out.setdefault(mask_key(task.train), []).append(task)
    return list(out.values())


def plan(name: str, spec: Spec) -> dict:
    """The distinct training sets (= fits per candidate) a run needs, from the labels only (no fit)."""
    from virtualcell.selection.folds import context_folds, replicate_folds

    obs = spec.loader().obs
    tasks, columns, context_key, replicate_key = split(spec, obs)
    sets = set()
    for group in groups(tasks):
        train = obs[group[0].train]
        sets.add(group[0].train.tobytes())
        kw = {"condition_key": spec.condition_key, "control": spec.control}
        folds = (context_folds(train, context_key=context_key, **kw) if replicate_key is None else
                 replicate_folds(train, replicate_key=replicate_key, **kw))
        index = np.flatnonzero(group[0].train)
        for fold in folds:
            mask = np.zeros(len(obs), bool)
            mask[index[fold.train]] = True
            sets.add(mask.tobytes())
    out = {"dataset": name, "units": len(tasks), "outer_training_sets": len(groups(tasks)),
           "distinct_fits_per_candidate": len(sets)}
    print(json.dumps(out), flush=True)
    return out


def heldout_scores(x, genes, obs, columns, selection, train, group, spec) -> dict[str, dict[str, dict]]:
    """``{unit: {entry: scores}}``: every entry of ``selection`` fitted once on ``train``, scored on each task."""
    from virtualcell.evaluate.cells import aligned_cells, subset_cells
    from virtualcell.metrics import score_prediction
    from virtualcell.pipelines.holdout import unit_truth
    from virtualcell.selection.entries import fit_entry

    truths, space = {}, None
    for task in group:   # the harness's truth: DEGs from S, PCA of the task's reference cells
        truths[task.name] = unit_truth(x, genes, task, n_top=100, n_pcs=50, seed=0, space=space)
        space = truths[task.name].space if spec.protocol == "pert" else None   # PERT: one reference for all
    out: dict[str, dict[str, dict]] = {task.name: {} for task in group}
    context_key = spec.context_key if spec.protocol == "oos" else None
    for entry in selection.table["entry"]:
        pipe = fit_entry(train, selection.candidates, entry, selection.combined, selection.genes,
                         condition_key=spec.condition_key, control=spec.control, context_key=context_key,
                         preprocess=None, layer=None, seed=0, progress=False)
        for task in group:
            source = subset_cells(x, obs, genes, task.source, columns)
            pred = aligned_cells(pipe.predict(source, target=task.target, seed=0), genes)
            out[task.name][entry] = {k: float(v) for k, v in score_prediction(pred, truths[task.name]).items()}
    return out


def run_dataset(name: str, spec: Spec) -> dict:
    import pandas as pd

    from virtualcell.evaluate.cells import prepare_cells, subset_cells
    from virtualcell.selection import select_pipeline
    from virtualcell.selection.ranking import RULES, choose_entry

    adata = spec.loader()
    x, genes, _ = prepare_cells(adata, spec.preprocess)
    obs = adata.obs
    del adata
    tasks, columns, context_key, replicate_key = split(spec, obs)
    stats = {"fits": 0, "hits": 0, "fit_seconds": {}}
    install_fit_cache(stats)
    where = (f"pert: train on replicates other than {spec.holdout}, units = its targets" if spec.protocol == "pert"
             else f"OOS by {spec.context_key}" + (f" (never held out: {', '.join(spec.exclude_contexts)})"
                                                   if spec.exclude_contexts else ""))
    result = {"dataset": name, "context_key": spec.context_key if spec.protocol == "oos" else spec.replicate_key,
              "units": {}, "stats": stats, "candidates": spec.candidates(), "kind": spec.protocol,
              "protocol": f"{where}; preprocess {spec.preprocess}; harness splits and scoring (PCA of each task's "
                          f"reference cells); select defaults (full budget, rule one-se, n_jobs=1, seed 0); "
                          f"{spec.budget_note}",
              "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "threads": 1}}
    path = OUT / f"{name}.json"
    for group in groups(tasks):
        start = time.perf_counter()
        train = subset_cells(x, obs, genes, group[0].train, columns)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            selection = select_pipeline(train, candidates=spec.candidates(), context_key=context_key,
                                        replicate_key=replicate_key, condition_key=spec.condition_key,
                                        control=spec.control, n_jobs=1, seed=0, progress=False)
            report = selection.report
            losses = pd.DataFrame(report["losses"]).T
            ranks = pd.DataFrame(report["ranks"]).T
            fold_of = {u: f["name"] for f in report["folds"] for u in f["units"]}
            chosen = {rule: choose_entry(losses[report["order"]], report["order"], rule, fold_of,
                                         ranks[report["order"]])[0] for rule in RULES}
            held = heldout_scores(x, genes, obs, columns, selection, train, group, spec)
        inner = {row["entry"]: {k: row[k] for k in ("score", "score_sd", "score_se", "fold_scores", "mean_rank",
                                                    "pearson_delta_mean", "edistance_ratio_mean")}
                 for row in report["table"]}
        for task in group:
            result["units"][task.name] = {
                "winner": report["winner"], "chosen": chosen, "order": report["order"], "inner": inner,
                "heldout": held[task.name], "ensemble_weights": report["ensemble_weights"],
                "ensemble_base": report["ensemble_base"], "spread": report["spread"],
                "seconds_select": report["seconds"], "seconds_unit": time.perf_counter() - start}
        result["stats"] = stats
        write(path, result)
        print(f"{name} {', '.join(t.name for t in group)}: winner {report['winner']} "
              f"({time.perf_counter() - start:.0f} s, fits {stats['fits']}, hits {stats['hits']})", flush=True)
    return result


def write(path: Path, payload: dict) -> None:
    from virtualcell.io import json_clean

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(json_clean(payload), indent=1))
    tmp.replace(path)


def cost() -> None:
    """select(n_jobs=2) on all of Kang valid against one fit of vae+latent-arithmetic (both with 2 cores held)."""
    import torch

    from virtualcell.selection import DEFAULT_CANDIDATES, parse_candidate, select_pipeline
    from virtualcell.selection.cv import fit_candidate

    spec = datasets()["kang-valid"]
    adata = spec.loader()
    torch.set_num_threads(1)     # as in select's workers: one thread per process, two processes
    _, fit_seconds = fit_candidate(parse_candidate(DEFAULT_CANDIDATES[-1]), adata, condition_key=spec.condition_key,
                                   control=spec.control, context_key=spec.context_key, seed=0)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        selection = select_pipeline(adata, context_key=spec.context_key, condition_key=spec.condition_key,
                                    control=spec.control, n_jobs=2, seed=0, progress=False)
    total = time.perf_counter() - start
    write(OUT / "cost.json", {"dataset": "kang-valid", "n_jobs": 2, "select_seconds": total,
                              "vae_fit_seconds": fit_seconds, "ratio": total / fit_seconds,
                              "winner": selection.report["winner"], "seconds": selection.report["seconds"],
                              "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                                          "cores": 2, "torch_threads_per_process": 1}})
    print(f"select {total:.0f} s vs one VAE fit {fit_seconds:.0f} s: {total / fit_seconds:.1f}x", flush=True)


def main(argv: list[str]) -> None:
    import torch

    if argv == ["--cost"]:
        return cost()
    torch.set_num_threads(1)
    os.environ.setdefault("VIRTUALCELL_PROGRESS", "0")
    known = datasets()
    dry = argv[:1] == ["--plan"]
    names = argv[1:] if dry else argv
    for name in names or list(known):
        if name not in known:
            raise SystemExit(f"unknown dataset {name!r}; choose from {list(known)}")
        (plan if dry else run_dataset)(name, known[name])


if __name__ == "__main__":
    main(sys.argv[1:])
