"""cell-eval (the field's own scorer, PyPI ``cell-eval``) on the PERT predictions, beside our metrics.

    flock /tmp/vc-bench.lock nice python benchmarks/bench_celleval.py \
        --data ../shared/data/papalexi2021_crispr_thp1.h5ad \
        --runs benchmarks/out/harness/pert-pca benchmarks/out/harness/pert-vae

For every ``virtualcell benchmark pert`` output folder in ``--runs`` (its method's predictions) and
for each baseline (``control``, ``mean-shift``, ``mean-perturbation``: run here as the method of a
quick ``run_benchmark`` so that their predicted cells are saved too), the predictions are exported
to cell-eval's layout (:mod:`virtualcell.evaluate.celleval_export`) and scored with
``cell_eval.MetricsEvaluator(...).compute(profile="full")``. Writes
``benchmarks/results/harness/celleval-pert.json`` (our means and cell-eval's, per method) and prints
the table. Needs the ``benchmarks`` extra (``pip install -e '.[benchmarks]'``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "harness" / "celleval-pert.json"
BASELINES = ("control", "mean-shift", "mean-perturbation")
#: ours -> cell-eval: the metrics that measure the same thing (cell-eval's discrimination is 1 = perfect)
OURS = ("pearson_delta", "discrimination", "de_overlap_top100", "edistance_ratio", "r2_mean_all")
THEIRS = ("pearson_delta", "discrimination_score_l1", "overlap_at_N", "mse", "mae_delta", "pearson_edistance",
          "de_spearman_lfc_sig", "de_direction_match")


def _baseline_run(data: str, name: str, out: Path, seed: int) -> Path:
    from virtualcell.evaluate import run_benchmark

    folder = out / f"baseline-{name}"
    run_benchmark(data, "pert", encoder="identity-encoder", manipulator=name, baselines=False, preprocess="log1p",
                  out=folder, plots=False, overwrite=True, seed=seed, progress=False)
    return folder


def _score(folder: Path, data, out: Path, threads: int) -> dict:
    import polars as pl
    from cell_eval import MetricsEvaluator

    from virtualcell.evaluate.celleval_export import CONTROL_LABEL, PERT_COL, pair_from_benchmark, write_celleval_pair

    pred, real = pair_from_benchmark(folder, data)
    write_celleval_pair(out, pred, real)           # the exact files cell-eval read, for a third party
    start = time.perf_counter()
    evaluator = MetricsEvaluator(pred, real, control_pert=CONTROL_LABEL, pert_col=PERT_COL, num_threads=threads,
                                 outdir=str(out / "cell-eval"))
    per_target, agg = evaluator.compute(profile="full", write_csv=True)
    means = agg.filter(pl.col("statistic") == "mean").drop("statistic").to_dicts()[0]
    report = json.loads((folder / "results.json").read_text())
    label = report["method"]["label"]
    ours = report["means"][label]
    return {"label": label, "ours": {k: ours.get(k) for k in OURS},
            "ours_per_target": {t: {k: report["results"][label][t].get(k) for k in OURS} for t in report["contexts"]},
            "cell_eval": {k: (float(v) if v is not None else None) for k, v in means.items()},
            "cell_eval_per_target": {row["perturbation"]: {k: row.get(k) for k in THEIRS}
                                     for row in per_target.to_dicts()},
            "seconds_cell_eval": time.perf_counter() - start, "run": str(folder),
            "overlap_explained": _overlap_explained(out / "cell-eval", per_target)}


def _overlap_explained(outdir: Path, per_target) -> dict:
    """Why cell-eval's ``overlap_at_N`` sits far below our ``de_overlap_top100``: it keeps only genes with
    FDR < 0.05 on each side, takes N = the real side's count, and scores 0 where the real cells have none.

    Read from the DE tables cell-eval wrote (``real_de.csv``, ``pred_de.csv``): per target the number of
    significant genes of each side, and the mean overlap over the targets with at least one real one.
    """
    import pandas as pd

    real, pred = (pd.read_csv(outdir / f"{side}_de.csv") for side in ("real", "pred"))
    targets = sorted(set(real["target"]))
    n_real = real[real["fdr"] < 0.05].groupby("target").size().reindex(targets, fill_value=0)
    n_pred = pred[pred["fdr"] < 0.05].groupby("target").size().reindex(targets, fill_value=0)
    overlap = {row["perturbation"]: row.get("overlap_at_N") for row in per_target.to_dicts()}
    with_degs = [t for t in targets if n_real[t] > 0 and overlap.get(t) is not None]
    return {"n_targets": len(targets), "targets_without_real_significant_genes": int((n_real == 0).sum()),
            "median_real_significant_genes": float(n_real.median()),
            "median_predicted_significant_genes": float(n_pred.median()),
            "overlap_at_N_where_real_has_some": float(np.mean([overlap[t] for t in with_degs])) if with_degs else None}


def _agreement(entry: dict) -> dict:
    """Spearman correlation over targets between our pearson_delta and cell-eval's, and between the
    discrimination scores (ours inverted: 1 − ours)."""
    from scipy.stats import spearmanr

    targets = sorted(entry["ours_per_target"])
    out = {}
    for ours, theirs, flip in (("pearson_delta", "pearson_delta", False), ("discrimination", "discrimination_score_l1", True)):
        a = np.array([entry["ours_per_target"][t][ours] for t in targets], dtype=float)
        b = np.array([entry["cell_eval_per_target"].get(t, {}).get(theirs, np.nan) for t in targets], dtype=float)
        a = 1 - a if flip else a
        ok = np.isfinite(a) & np.isfinite(b)
        out[f"spearman_{ours}"] = float(spearmanr(a[ok], b[ok]).statistic) if ok.sum() > 2 and np.ptp(a[ok]) > 0 and np.ptp(b[ok]) > 0 else None
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--runs", nargs="*", default=[], help="virtualcell benchmark pert output folders")
    parser.add_argument("--out", default="benchmarks/out/harness/celleval")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-baselines", action="store_true")
    args = parser.parse_args(argv)

    import anndata as ad
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    folders = [Path(r) for r in args.runs]
    if not args.no_baselines:
        folders += [_baseline_run(args.data, name, out, args.seed) for name in BASELINES]
    data = ad.read_h5ad(args.data)
    entries = []
    for folder in folders:
        entry = _score(folder, data, out / folder.name, args.threads)
        entry.update(_agreement(entry))
        entries.append(entry)
        print(f"{entry['label']}: ours {entry['ours']} | cell-eval "
              f"{ {k: entry['cell_eval'].get(k) for k in THEIRS} }", flush=True)
    from virtualcell.evaluate import report as reporting

    result = {"command": "python benchmarks/bench_celleval.py " + shlex.join(sys.argv[1:] if argv is None else argv),
              "cell_eval_version": reporting.package_versions().get("cell-eval") or _version("cell-eval"),
              "machine": reporting.machine_info(), "seed": args.seed, "methods": entries}
    reporting.write_json(RESULTS, result)
    print(f"-> {RESULTS}")


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
