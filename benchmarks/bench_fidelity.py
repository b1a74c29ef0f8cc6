"""Fidelity of ``select``'s inner CV (issue 22 items 1, 2, 5): does the inner ranking carry over to held-out units?

For each dataset and each outer held-out context ``A`` (the OOS task): ``select_pipeline`` on the training
cells (every cell except ``A``'s perturbed ones) with the default candidates at their default budget
(mean-shift, pca+latent-arithmetic, vae+latent-arithmetic with the VAE's own 40 epochs; ``n_jobs=1``);
then **every** entry of its table (candidates, stacked ensemble, ``+spread``) is fitted on the same training
cells the way ``select`` fits its winner (:func:`virtualcell.selection.entries.fit_entry`) and scored on
``A`` with the harness's scoring (:func:`virtualcell.pipelines.holdout.unit_truth`,
:func:`virtualcell.metrics.score_prediction`). Written per unit, atomically, to
``benchmarks/results/fidelity/<dataset>.json``; ``benchmarks/report_fidelity.py`` renders it.

The winner under each rule (``one-se`` = select's default, ``min``, ``rank`` = the old mean rank) is
recomputed from the *inner* table only; the held-out scores are only read to report regret.

Compute: a fit is a deterministic function of its training cells and seed, and the inner fold "all but
A's and c's perturbed cells" of outer unit A is the inner fold of outer unit c too, so fits are cached by
(candidate, cells) within a dataset: 21 inner + 7 outer fits per candidate on Kang valid instead of 49.

    .venv/bin/python benchmarks/bench_fidelity.py [sim-shared sim-specific kang-valid]

Cost (issue 22 item 5; needs both CPU slots): ``select`` with ``n_jobs=2`` on every Kang valid cell against
one full fit of its most expensive candidate (the VAE), written to ``cost.json``:

    .venv/bin/python benchmarks/bench_fidelity.py --cost
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "fidelity"
DATA = Path(os.environ.get("DATA_DIR", ROOT.parent / "shared" / "data"))


def datasets():
    """name -> (loader, context_key, condition_key, control, target). Simulations: known truth, a priori settings."""
    from virtualcell.datasets import simulate_perturbation

    def sim(heterogeneity, seed):
        return lambda: simulate_perturbation(n_cells_per_group=150, n_genes=200, n_cell_types=5,
                                             heterogeneity=heterogeneity, effect_size=1.0, seed=seed)

    def kang():
        import anndata as ad
        return ad.read_h5ad(DATA / "kang_pbmc_scgen_valid.h5ad")

    return {"sim-shared": (sim(0.3, 11), "cell_type", "condition", "control", "stimulated"),
            "sim-specific": (sim(1.0, 12), "cell_type", "condition", "control", "stimulated"),
            "kang-valid": (kang, "cell_type", "condition", "control", "stimulated")}


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


def heldout_scores(adata, selection, train, unit, spec):
    """Every entry of ``selection`` fitted on ``train`` and scored on held-out context ``unit``."""
    from virtualcell.metrics import score_prediction
    from virtualcell.pipelines.holdout import unit_truth
    from virtualcell.pipelines.splits import Task
    from virtualcell.selection.entries import fit_entry

    _, context_key, condition_key, control, target = spec
    context = adata.obs[context_key].astype(str).to_numpy()
    condition = adata.obs[condition_key].astype(str).to_numpy()
    task = Task(unit, target, ~((context == unit) & (condition != control)), (context == unit) & (condition == control),
                (context == unit) & (condition == target))
    x = np.asarray(adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X, dtype=np.float32)
    genes = list(map(str, adata.var_names))
    truth = unit_truth(x, genes, task, n_top=100, n_pcs=50, seed=0, pca_float64=True)
    source = adata[task.source].copy()
    out = {}
    for entry in selection.table["entry"]:
        pipe = fit_entry(train, selection.candidates, entry, selection.combined, selection.genes,
                         condition_key=condition_key, control=control, context_key=context_key, preprocess=None,
                         layer=None, seed=0, progress=False)
        pred = pipe.predict(source, target=target, seed=0)
        pred = np.asarray(pred[:, genes].X, dtype=np.float64)
        out[entry] = {k: float(v) for k, v in score_prediction(pred, truth).items()}
    return out


def run_dataset(name: str, spec) -> dict:
    import pandas as pd

    from virtualcell.selection import select_pipeline
    from virtualcell.selection.ranking import RULES, choose_entry

    loader, context_key, condition_key, control, target = spec
    adata = loader()
    stats = {"fits": 0, "hits": 0, "fit_seconds": {}}
    install_fit_cache(stats)
    contexts = list(pd.unique(adata.obs[context_key].astype(str)))
    result = {"dataset": name, "context_key": context_key, "units": {}, "stats": stats,
              "protocol": "OOS by context; select defaults (full budget, rule one-se, n_jobs=1, seed 0)",
              "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "threads": 1}}
    path = OUT / f"{name}.json"
    for unit in contexts:
        start = time.perf_counter()
        context = adata.obs[context_key].astype(str).to_numpy()
        condition = adata.obs[condition_key].astype(str).to_numpy()
        train = adata[~((context == unit) & (condition != control))].copy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            selection = select_pipeline(train, context_key=context_key, condition_key=condition_key, control=control,
                                        n_jobs=1, seed=0, progress=False)
            report = selection.report
            losses = pd.DataFrame(report["losses"]).T
            ranks = pd.DataFrame(report["ranks"]).T
            fold_of = {u: f["name"] for f in report["folds"] for u in f["units"]}
            chosen = {rule: choose_entry(losses[report["order"]], report["order"], rule, fold_of,
                                         ranks[report["order"]])[0] for rule in RULES}
            held = heldout_scores(adata, selection, train, unit, spec)
        result["units"][unit] = {
            "winner": report["winner"], "chosen": chosen, "order": report["order"],
            "inner": {row["entry"]: {k: row[k] for k in ("score", "score_sd", "score_se", "fold_scores", "mean_rank",
                                                         "pearson_delta_mean", "edistance_ratio_mean")}
                      for row in report["table"]},
            "heldout": held, "ensemble_weights": report["ensemble_weights"], "ensemble_base": report["ensemble_base"],
            "spread": report["spread"], "seconds_select": report["seconds"],
            "seconds_unit": time.perf_counter() - start}
        result["stats"] = stats
        write(path, result)
        print(f"{name} {unit}: winner {report['winner']} ({time.perf_counter() - start:.0f} s, fits {stats['fits']}, "
              f"hits {stats['hits']})", flush=True)
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

    loader, context_key, condition_key, control, _ = datasets()["kang-valid"]
    adata = loader()
    torch.set_num_threads(1)     # as in select's workers: one thread per process, two processes
    _, fit_seconds = fit_candidate(parse_candidate(DEFAULT_CANDIDATES[-1]), adata, condition_key=condition_key,
                                   control=control, context_key=context_key, seed=0)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        selection = select_pipeline(adata, context_key=context_key, condition_key=condition_key, control=control,
                                    n_jobs=2, seed=0, progress=False)
    total = time.perf_counter() - start
    write(OUT / "cost.json", {"dataset": "kang-valid", "n_jobs": 2, "select_seconds": total,
                              "vae_fit_seconds": fit_seconds, "ratio": total / fit_seconds,
                              "winner": selection.report["winner"], "seconds": selection.report["seconds"],
                              "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                                          "cores": 2, "torch_threads_per_process": 1}})
    print(f"select {total:.0f} s vs one VAE fit {fit_seconds:.0f} s: {total / fit_seconds:.1f}x", flush=True)


def main(names: list[str]) -> None:
    import torch

    if names == ["--cost"]:
        return cost()
    torch.set_num_threads(1)
    os.environ.setdefault("VIRTUALCELL_PROGRESS", "0")
    known = datasets()
    for name in names or list(known):
        if name not in known:
            raise SystemExit(f"unknown dataset {name!r}; choose from {list(known)}")
        run_dataset(name, known[name])


if __name__ == "__main__":
    main(sys.argv[1:])
