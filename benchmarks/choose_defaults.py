"""Choose manipulator defaults by inner cross-validation on training contexts only (issue #11; docs/defaults.md).

    flock /tmp/vc-bench.lock nice python benchmarks/choose_defaults.py --threads 2 \
        > /tmp/defaults.log 2>&1

For each manipulator of :data:`GRIDS`, every configuration of its small grid is a candidate of
``virtualcell select``'s inner CV (virtualcell/selection/cv.py), scored with metrics v2 and ranked
per unit by the mean rank over pearson_delta, edistance_ratio and r2_mean_top100, on each dataset of
:data:`DATASETS` (training cells only: Kang valid without CD4T's stimulated cells, leave one cell type
out; Papalexi rep_1 + rep_2, leave one replicate out; rep_3 and CD4T stay unseen). A configuration
replaces the shipped default only if its mean rank is better than the default's on every dataset.
Writes ``benchmarks/results/defaults/<manipulator>.json`` (read by benchmarks/report_selection.py).
Cells are subsampled (``--max-cells`` per fold and condition) and epochs capped so that the whole run
stays near 10 minutes on 2 cores: say so beside any number.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
OUT = HERE / "results" / "defaults"

#: manipulator -> (encoder spec, grid of option dicts; the first is the shipped default, any epoch cap aside)
GRIDS: dict[str, tuple[str, list[dict]]] = {
    "latent-arithmetic": ("pca", [{}, {"balance": False}]),
    "cgan": ("pca", [{"max_epochs": 10}, {"max_epochs": 10, "init_locations": False},
                     {"max_epochs": 10, "correction_weight": 1.0}]),
    "diffusion": ("pca", [{"max_epochs": 40, "sampling_progress": False},
                          {"max_epochs": 40, "sampling_progress": False, "arithmetic_prior": 1.0},
                          {"max_epochs": 40, "sampling_progress": False, "strength": 0.5}]),
}
#: name -> (file, preprocess, fold mode, fold column, cells left out entirely before anything else)
DATASETS = {
    "kang-valid": ("kang_pbmc_scgen_valid.h5ad", None, "context", "cell_type",
                   {"cell_type": "CD4T", "condition": "stimulated"}),
    "papalexi": ("papalexi2021_crispr_thp1.h5ad", "log1p", "replicate", "bio_rep", None),
}


def _label(manipulator: str, encoder: str, options: dict) -> str:
    text = ",".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in options.items())
    return f"{encoder}+{manipulator}" + (f"({text})" if text else "")


def _load(name: str, max_cells: int, seed: int):
    import anndata as ad

    from virtualcell.data.preprocess import Preprocessing
    from virtualcell.selection.folds import subsample_groups

    file, preprocess, mode, fold_key, reserved = DATASETS[name]
    adata = ad.read_h5ad(DATA / file)
    if name == "papalexi":
        adata = adata[(adata.obs["condition"] != "ambiguous") & (adata.obs["bio_rep"] != "rep_3")].copy()
    if reserved:
        drop = np.ones(adata.n_obs, dtype=bool)
        for key, value in reserved.items():
            drop &= (adata.obs[key].astype(str) == value).to_numpy()
        adata = adata[~drop].copy()
    keep = subsample_groups(adata.obs, [fold_key, "condition"], max_cells, seed)
    adata = adata[keep].copy()
    recipe = Preprocessing.from_spec(preprocess).fit(adata)
    return recipe.transform(adata).astype(np.float32), list(recipe.genes), adata.obs, mode, fold_key


def run_grid(manipulator: str, datasets: list[str], *, max_cells: int, min_cells: int, seed: int, n_top: int,
             loaded: dict) -> dict:
    from virtualcell.selection.candidates import parse_candidate
    from virtualcell.selection.cv import CVData, fold_tasks, run_inner_cv
    from virtualcell.selection.folds import context_folds, replicate_folds
    from virtualcell.selection.ranking import metric_names, metric_value, rank_entries

    encoder, grid = GRIDS[manipulator]
    candidates = [parse_candidate({"encoder": encoder, "manipulator": {"name": manipulator, **options},
                                   "label": _label(manipulator, encoder, options)}) for options in grid]
    metrics = metric_names(n_top)
    per_dataset, seconds = {}, {c.label: [] for c in candidates}
    all_scores = {c.label: {} for c in candidates}
    for name in datasets:
        x, genes, obs, mode, fold_key = loaded[name]
        if mode == "context":
            folds = context_folds(obs, context_key=fold_key, condition_key="condition", control="control",
                                  min_cells=min_cells)
            columns, context_key = ["condition", fold_key], fold_key
            values = obs[fold_key].astype(str).to_numpy()
            outside = lambda f, values=values: values != f.name  # noqa: E731
        else:
            folds = replicate_folds(obs, replicate_key=fold_key, condition_key="condition", control="control",
                                    min_cells=min_cells)
            columns, context_key = ["condition"], None
            outside = lambda f: f.train  # noqa: E731
        tasks = fold_tasks(folds, outside)
        cv = run_inner_cv(CVData(x, obs[columns], genes), tasks, candidates, condition_key="condition",
                          control="control", context_key=context_key, n_top=n_top, seed=seed, progress=True)
        order, fit_seconds = [t.name for t in tasks], cv.seconds
        scores = {c.label: {u: cv.scores[c.label][u] for u in order} for c in candidates}
        ranks = rank_entries(scores, metrics)
        per_dataset[name] = {"mean_rank": ranks.mean().to_dict(), "n_units": len(order), "folds": [f.name for f in folds]}
        for label in scores:
            all_scores[label].update({f"{name}:{u}": v for u, v in scores[label].items()})
            seconds[label] += fit_seconds[label]
    ranks_all = rank_entries(all_scores, metrics)
    table = []
    for c in candidates:
        values = {m: float(np.nanmean([metric_value(s, m, False) for s in all_scores[c.label].values()])) for m in metrics}
        table.append({"label": c.label, "mean_rank": float(ranks_all[c.label].mean()),
                      "rank_sd": float(ranks_all[c.label].std(ddof=0)), "means": values,
                      "seconds_fit": float(np.mean(seconds[c.label])),
                      "per_dataset_rank": {d: per_dataset[d]["mean_rank"][c.label] for d in datasets}})
    table.sort(key=lambda r: r["mean_rank"])
    default = candidates[0].label
    better_everywhere = [r["label"] for r in table if r["label"] != default and all(
        r["per_dataset_rank"][d] < per_dataset[d]["mean_rank"][default] for d in datasets)]
    best = table[0]["label"]
    decision = (f"change the default to {better_everywhere[0]} (better mean rank than the default on every dataset)"
                if better_everywhere else "keep the default (no configuration beats it on every dataset)")
    return {"manipulator": manipulator, "encoder": encoder, "grid": grid, "datasets": datasets,
            "per_dataset": per_dataset, "metrics": list(metrics), "table": table, "best": best, "default": default,
            "scores": all_scores,
            "decision": decision, "max_cells": max_cells, "min_cells": min_cells, "seed": seed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manipulators", default=",".join(GRIDS), help="comma-separated keys of GRIDS")
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated keys of DATASETS")
    parser.add_argument("--max-cells", type=int, default=80, help="cells per (fold, condition) group")
    parser.add_argument("--min-cells", type=int, default=20, help="fewest cells of an inner unit")
    parser.add_argument("--n-top", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from virtualcell.evaluate.report import machine_info, write_json

    datasets = [d for d in args.datasets.split(",") if d]
    if not DATA.exists():
        print(f"{DATA} is absent: the real datasets are needed.", file=sys.stderr)
        return 2
    loaded = {name: _load(name, args.max_cells, args.seed) for name in datasets}
    command = "python benchmarks/choose_defaults.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    protocol = ("inner CV on training cells only: " + "; ".join(
        f"{d}: leave one {DATASETS[d][2]} ({DATASETS[d][3]}) out" + (f", without {DATASETS[d][4]}" if DATASETS[d][4] else "")
        + (", replicates rep_1 + rep_2 only" if d == "papalexi" else "") for d in datasets) +
        f"; {args.max_cells} cells per fold and condition, units with >= {args.min_cells} cells; selection score = "
        "mean rank over pearson_delta, edistance_ratio, r2_mean_top100.")
    for manipulator in [m for m in args.manipulators.split(",") if m]:
        start = time.perf_counter()
        result = run_grid(manipulator, datasets, max_cells=args.max_cells, min_cells=args.min_cells, seed=args.seed,
                          n_top=args.n_top, loaded=loaded)
        result.update(command=command, protocol=protocol, seconds=time.perf_counter() - start, machine=machine_info(),
                      torch_threads=args.threads)
        write_json(args.out / f"{manipulator}.json", result)
        print(f"{manipulator}: best {result['best']}; {result['decision']} ({result['seconds']:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
