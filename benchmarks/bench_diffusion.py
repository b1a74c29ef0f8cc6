"""Diffusion manipulator benchmarks: Kang OOS metrics + calibration of the mean, and sampling speed.

    # OOS (EVALUATION.md) with calibration, one fit per held-out cell type:
    python benchmarks/bench_diffusion.py oos --data ../shared/data/kang_pbmc_scgen_valid.h5ad \
        --out benchmarks/out/diffusion-valid --threads 1
    python benchmarks/bench_diffusion.py oos --data ../shared/data/kang_ifnb_full.h5ad --preprocess kang-full \
        --context-key cell_type_coarse --exclude-contexts Megakaryocyte,Erythrocyte --out benchmarks/out/diffusion-full
    # one fit per held-out context, metrics for a grid of sampling settings (with_sampling, no refit):
    python benchmarks/bench_diffusion.py sweep --data ../shared/data/kang_pbmc_scgen_valid.h5ad --contexts CD4T \
        --grid guidance_scale=1,2,3 --grid strength=0.5,0.8,1.0 --grid compose=0,1 --out benchmarks/out/diffusion-tune/sweep.json
    # on a GPU, one process per held-out context, then one folder of them:
    python benchmarks/bench_diffusion.py oos ... --contexts CD4T --device cuda --encoder-option device=cuda --out o/CD4T
    python benchmarks/bench_diffusion.py merge o/CD4T o/B ... --out benchmarks/out/diffusion-valid-gpu
    # sampling speed (cells per second, 50 DDIM steps):
    python benchmarks/bench_diffusion.py speed --threads 2 [--device cuda]
    # side-by-side tables: this script's runs beside ``virtualcell benchmark`` runs (results.json folders)
    python benchmarks/bench_diffusion.py compare benchmarks/out/diffusion-valid benchmarks/out/valid-vae ...

The OOS loop is the harness's (``virtualcell.evaluate.benchmark``): the same preprocessing, tasks,
DEGs, metrics, seeding (``seed_everything(seed)`` before fit, ``predict(seed=seed)``), so its metric
numbers equal ``virtualcell benchmark oos`` with the same options. On top it draws ``--n-samples``
predicted populations per held-out context and scores the predicted 90% interval of the mean over
the top-100 DEGs (``virtualcell.evaluate.calibration``, predictive quantiles; ``coverage90_linear``:
numpy's default quantiles of the same samples), for each ``--effect-scales`` value of the pipeline's
``context_effect_scale`` (the gene-space random effect of the held-out type's response).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_MANIPULATOR = {"name": "diffusion"}


def _options(items: list[str] | None) -> dict:
    out = {}
    for item in items or []:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _markdown(report: dict) -> str:
    metrics = ["r2_mean_all", "r2_mean_top100", "pearson_delta", "pearson_delta_top100", "de_overlap_top100",
               "edistance_ratio", "r2_var_top100", "gene_corr_top100"]
    calib = ["coverage90", "coverage90_linear", "coverage50", "coverage80", "coverage95", "mean_width90", "mean_abs_error"]
    tags = sorted({k[len("coverage90"):] for r in report["results"].values() for k in r if k.startswith("coverage90_scale")})
    timing = ["seconds_train", "seconds_predict", "seconds_samples", "cells_per_second"]
    lines = [f"# Diffusion OOS: {report['method']['label']}", "",
             f"- command: `{report['command']}`",
             f"- data: `{report['dataset']['path']}` (sha256 `{report['dataset']['sha256'][:16]}…`), "
             f"{report['dataset']['n_cells']} cells x {report['dataset']['n_genes']} genes",
             f"- encoder `{json.dumps(report['method']['encoder'])}`, manipulator `{json.dumps(report['method']['manipulator'])}`",
             f"- seed {report['seed']}; calibration: {report['n_samples']} sampled populations of at most "
             f"{report['calib_cells']} source cells per context, context_effect_scale {report['effect_scales']}; "
             f"torch threads {report['threads']}; device {report.get('device', 'cpu')}; machine {report['machine']}", "",
             "## Metrics (central prediction, n_samples=1)", "",
             "| context | " + " | ".join(metrics + timing) + " |", "|---" * (len(metrics) + len(timing) + 1) + "|"]
    rows = report["results"]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(r.get(k)) for k in metrics + timing) + " |")
    lines.append("| **mean** | " + " | ".join(_fmt(report["means"].get(k)) for k in metrics + timing) + " |")
    scales = report["effect_scales"]
    for tag, scale in [("", scales[0])] + [(t, float(t[len("_scale"):])) for t in tags]:
        columns = [k + tag for k in calib if not (tag and k == "coverage90_linear")]
        lines += ["", "## Calibration: real mean of each top-100 DEG inside the predicted interval of the mean "
                  f"(context_effect_scale {scale:g})", "",
                  "| context | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        for name, r in rows.items():
            lines.append(f"| {name} | " + " | ".join(_fmt(r.get(k)) for k in columns) + " |")
        lines.append("| **mean** | " + " | ".join(_fmt(report["means"].get(k)) for k in columns) + " |")
    trained = ["epochs", "best_epoch", "stopped_early"]
    lines += ["", "## Denoiser training (best_epoch 0-based)", "", "| context | " + " | ".join(trained) + " |",
              "|---" * (len(trained) + 1) + "|"]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(r.get("training", {}).get(k)) for k in trained) + " |")
    return "\n".join(lines) + "\n"


def _write_report(out: Path, report: dict) -> None:
    """``results.json``, ``results.md`` and ``calibration.png`` (coverage against nominal level per context)."""
    from virtualcell.evaluate import report as reporting
    from virtualcell.evaluate.plots import coverage_curves

    reporting.write_json(out / "results.json", report)
    reporting.write_text(out / "results.md", _markdown(report))
    levels = {"coverage50": 0.5, "coverage80": 0.8, "coverage90": 0.9, "coverage95": 0.95}
    curves = {name: {level: r[key] for key, level in levels.items()} for name, r in report["results"].items()}
    title = (f"{report['method']['label']}, {Path(report['dataset']['path']).name}\n{report['n_samples']} samples, "
             f"context_effect_scale {report['effect_scales'][0]:g}")
    reporting.atomic_write(out / "calibration.png", lambda tmp: coverage_curves(curves, tmp, title=title))


def _calibration_samples(pipe, source, target: str, args: argparse.Namespace) -> dict[float, np.ndarray]:
    """Decoded populations [S, m, genes] of (at most ``--calib-cells``) source cells, per context_effect_scale.

    ``population_samples`` (``pipe.predict_samples(..., context_effect_scale=scale)``), seed
    ``--seed + 1000``: the same model samples for every scale, only the random effect's scale differs.
    """
    from virtualcell.evaluate.calibration import population_samples

    rng = np.random.default_rng(args.seed)
    rows = np.sort(rng.choice(source.n_obs, size=min(args.calib_cells, source.n_obs), replace=False))
    cells = source[rows]
    return {scale: population_samples(pipe, cells, target=target, n_samples=args.n_samples, seed=args.seed + 1000,
                                      context_effect_scale=scale) for scale in args.effect_scales}


def _oos_split(args: argparse.Namespace):
    """The EVALUATION.md OOS split of ``args.data``: (x [cells, genes], genes, obs, tasks)."""
    import anndata as ad

    from virtualcell.evaluate.benchmark import _prepare
    from virtualcell.evaluate.splits import oos_tasks

    adata = ad.read_h5ad(args.data)
    preprocess = None if args.preprocess in (None, "none") else args.preprocess
    x, genes, _ = _prepare(adata, preprocess)
    tasks = oos_tasks(adata.obs, context_key=args.context_key, condition_key="condition", control="control",
                      target="stimulated", contexts=args.contexts.split(",") if args.contexts else None,
                      exclude_contexts=args.exclude_contexts.split(",") if args.exclude_contexts else (), min_cells=2)
    return x, genes, adata.obs, tasks


def run_oos(args: argparse.Namespace) -> dict:
    import anndata as ad
    import pandas as pd
    import torch

    from virtualcell.evaluate import metrics, report as reporting
    from virtualcell.evaluate.benchmark import _aligned, _restore_threads, _safe_name, _subset
    from virtualcell.evaluate.calibration import calibration_report, mean_interval
    from virtualcell.execution import seed_everything
    from virtualcell.pipelines.perturbation import PerturbationPipeline

    torch.set_num_threads(args.threads)
    encoder = {"name": args.encoder, **_options(args.encoder_option)}
    manipulator = {**DEFAULT_MANIPULATOR, **_options(args.manipulator_option)}
    out = Path(args.out)
    (out / "predictions").mkdir(parents=True, exist_ok=True)
    x, genes, obs, tasks = _oos_split(args)
    report = {"command": args.command, "dataset": {"path": str(Path(args.data).resolve()),
                                                   "sha256": reporting.sha256_file(args.data),
                                                   "n_cells": int(x.shape[0]), "n_genes": len(genes)},
              "method": {"label": f"{args.encoder}+diffusion", "encoder": encoder, "manipulator": manipulator},
              "seed": args.seed, "n_samples": args.n_samples, "threads": args.threads, "device": args.device,
              "calib_cells": args.calib_cells, "effect_scales": args.effect_scales,
              "machine": reporting.machine_info(), "packages": reporting.package_versions(), "results": {}, "means": {}}
    columns = ["condition", args.context_key]
    for task in tasks:
        stim, ctrl = x[task.truth].astype(np.float64), x[task.source].astype(np.float64)
        degs = metrics.top_degs(stim, ctrl, genes, n=100)
        _restore_threads(args.threads)  # scanpy's numba Wilcoxon raises torch's threads to all cores
        pipe = PerturbationPipeline(encoder=dict(encoder), manipulator=dict(manipulator), preprocess=None,
                                    device=args.device)
        train = _subset(x, obs, genes, task.train, columns)
        source = _subset(x, obs, genes, task.source, columns)
        seed_everything(args.seed)
        start = time.perf_counter()
        pipe.fit(train, condition_key="condition", control="control", context_key=args.context_key, seed=args.seed,
                 progress=not args.quiet)
        seconds_train = time.perf_counter() - start
        start = time.perf_counter()
        predicted = pipe.predict(source, target=task.target, seed=args.seed)
        seconds_predict = time.perf_counter() - start
        pred = _aligned(predicted, genes)
        scores = metrics.perturbation_metrics(pred, stim, ctrl, genes, n_top=100, degs=degs)
        _restore_threads(args.threads)
        start = time.perf_counter()
        samples_by_scale = _calibration_samples(pipe, source, task.target, args)
        seconds_samples = time.perf_counter() - start
        result = {**scores, "seconds_train": seconds_train, "seconds_predict": seconds_predict,
                  "seconds_samples": seconds_samples,
                  "cells_per_second": float(args.n_samples * min(args.calib_cells, source.n_obs) / seconds_samples),
                  "training": dict(getattr(pipe.manipulator, "training_summary", {})), **task.sizes}
        for scale, samples in samples_by_scale.items():
            calibration = calibration_report(samples, stim, genes, degs, level=0.9, levels=(0.5, 0.8, 0.9, 0.95))
            tag = "" if scale == args.headline_scale else f"_scale{scale:g}"
            result.update({f"coverage90{tag}": calibration["coverage"], f"mean_width90{tag}": calibration["mean_width"],
                           f"mean_abs_error{tag}": calibration["mean_abs_error"]})
            result.update({f"coverage{round(float(k) * 100)}{tag}": v for k, v in calibration["curve"].items() if k != "0.9"})
            if not tag:  # the same samples with numpy's default (narrower) sample quantiles, for comparison
                result["coverage90_linear"] = calibration_report(samples, stim, genes, degs, method="linear")["coverage"]
        report["results"][task.name] = result
        samples = samples_by_scale[args.headline_scale]
        lower, upper, _ = mean_interval(samples, level=0.9)
        saved = ad.AnnData(X=pred.astype(np.float32), obs=source.obs.copy(),
                           var=pd.DataFrame({"mean_q05": lower, "mean_q95": upper, "top100_deg": np.isin(genes, degs)},
                                            index=pd.Index(genes, dtype=str)))
        saved.uns["benchmark"] = {"context": task.name, "seed": args.seed, "n_samples": args.n_samples,
                                  "calib_cells": args.calib_cells, "context_effect_scale": args.headline_scale}
        reporting.write_h5ad(saved, out / "predictions" / f"{_safe_name(task.name)}.h5ad")
        keys = [k for k, v in result.items() if isinstance(v, float)]
        report["means"] = {k: float(np.mean([r[k] for r in report["results"].values()])) for k in keys}
        print(task.name, json.dumps({k: round(v, 4) for k, v in result.items() if isinstance(v, float)}), flush=True)
        _write_report(out, report)
    print(_markdown(report))
    return report


def run_sweep(args: argparse.Namespace) -> dict:
    """One fit per held-out context, then the EVALUATION.md metrics for a grid of sampling settings.

    Sampling settings leave the weights as they are (``DiffusionManipulator.with_sampling``), so a
    grid costs one fit plus one prediction per setting. Grid: ``--grid key=v1,v2 ...`` (product).
    """
    import itertools

    import torch

    from virtualcell.evaluate import metrics
    from virtualcell.evaluate.benchmark import _aligned, _restore_threads, _subset
    from virtualcell.execution import seed_everything
    from virtualcell.pipelines.perturbation import PerturbationPipeline

    torch.set_num_threads(args.threads)
    encoder = {"name": args.encoder, **_options(args.encoder_option)}
    manipulator = {**DEFAULT_MANIPULATOR, **_options(args.manipulator_option)}
    grid = {}
    for item in args.grid or []:
        key, _, values = item.partition("=")
        grid[key] = [json.loads(v) for v in values.split(",")]
    settings = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())] or [{}]
    x, genes, obs, tasks = _oos_split(args)
    columns = ["condition", args.context_key]
    result = {"command": args.command, "encoder": encoder, "manipulator": manipulator, "seed": args.seed, "rows": []}
    keys = ["r2_mean_all", "r2_mean_top100", "pearson_delta", "edistance_ratio", "r2_var_top100"]
    for task in tasks:
        stim, ctrl = x[task.truth].astype(np.float64), x[task.source].astype(np.float64)
        degs = metrics.top_degs(stim, ctrl, genes, n=100)
        _restore_threads(args.threads)
        pipe = PerturbationPipeline(encoder=dict(encoder), manipulator=dict(manipulator), preprocess=None,
                                    device=args.device)
        seed_everything(args.seed)
        pipe.fit(_subset(x, obs, genes, task.train, columns), condition_key="condition", control="control",
                 context_key=args.context_key, seed=args.seed, progress=not args.quiet)
        fitted = pipe.manipulator
        source = _subset(x, obs, genes, task.source, columns)
        for change in settings:
            pipe.manipulator = fitted.with_sampling(**change) if change else fitted
            pred = _aligned(pipe.predict(source, target=task.target, seed=args.seed), genes)
            scores = metrics.perturbation_metrics(pred, stim, ctrl, genes, n_top=100, degs=degs)
            _restore_threads(args.threads)
            row = {"context": task.name, **change, **{k: float(scores[k]) for k in keys}}
            result["rows"].append(row)
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
        pipe.manipulator = fitted
    if args.out:
        from virtualcell.evaluate import report as reporting

        reporting.write_json(Path(args.out), result)
    return result


def run_speed(args: argparse.Namespace) -> dict:
    """Cells per second of ``manipulate`` with 50 DDIM steps (the sampling cost does not depend on the weights)."""
    import torch

    from virtualcell.component import Condition
    from virtualcell.evaluate import report as reporting
    from virtualcell.instruments.manipulators.diffusion import DiffusionManipulator

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    options = {**{k: v for k, v in DEFAULT_MANIPULATOR.items() if k != "name"}, **_options(args.manipulator_option)}
    g = torch.Generator().manual_seed(0)
    n_train, d = 512, args.n_latent
    z = torch.randn(n_train, d, generator=g)
    labels = Condition(torch.arange(n_train) % 2, None, (torch.arange(n_train) // 2) % 4)
    model = DiffusionManipulator(**{**options, "max_epochs": 1, "patience": None, "sampling_progress": False})
    model.to(device).fit(z.to(device), labels.to(device), progress=False)
    rows = []
    for label, change in (("generation from noise (strength 1: 50 DDIM steps)", {"strength": 1.0, "inversion": "noise"}),
                          ("counterfactual (DDIM inversion + 50-step chain at the default strength)", {})):
        for mixed in ([False, True] if device.type == "cuda" else [False]):
            runner = model.with_sampling(num_inference_steps=50, mixed_precision=mixed, **change)
            counted = [0]
            hook = runner.denoiser.register_forward_pre_hook(lambda module, inputs: counted.__setitem__(
                0, counted[0] + inputs[0].shape[0]))
            q = torch.randn(args.n_cells, d, generator=g).to(device)
            condition = Condition(torch.ones(args.n_cells, dtype=torch.long), torch.zeros(args.n_cells, dtype=torch.long),
                                  torch.zeros(args.n_cells, dtype=torch.long)).to(device)
            runner.manipulate(q[:64], condition.subset(slice(0, 64)))  # warm-up
            counted[0] = 0
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            runner.manipulate(q, condition, generator=torch.Generator().manual_seed(0))
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            hook.remove()
            rows.append({"mode": label, "strength": runner.config["strength"],
                         "guidance_scale": runner.config["guidance_scale"], "compose": runner.config["compose"],
                         "denoiser_rows_per_cell": counted[0] / args.n_cells, "mixed_precision": mixed,
                         "device": str(device), "cells": args.n_cells, "seconds": seconds,
                         "cells_per_second": args.n_cells / seconds})
            print(json.dumps(rows[-1]), flush=True)
    result = {"command": args.command, "threads": args.threads, "n_latent": d, "manipulator": options,
              "machine": reporting.machine_info(), "rows": rows}
    if args.out:
        reporting.write_json(Path(args.out), result)
    return result


COMPARED = ("r2_mean_all", "r2_mean_top100", "pearson_delta", "de_overlap_top100", "edistance_ratio", "r2_var_top100")


def _method_results(folder: Path) -> dict[str, dict[str, dict]]:
    """label -> context -> metrics, from a ``bench_diffusion.py oos`` or a ``virtualcell benchmark`` folder."""
    report = json.loads((folder / "results.json").read_text())
    if "baselines" in report:  # the harness: method + baselines
        return dict(report["results"])
    return {report["method"]["label"]: report["results"]}


def run_merge(args: argparse.Namespace) -> dict:
    """Merge ``oos`` folders of disjoint ``--contexts`` (same data and method) into ``--out``.

    The merged ``results.json`` keeps the first run's settings, every run's per-context results (in the
    order given) and their means, and lists the runs' commands under ``commands``; predictions are copied.
    """
    import shutil

    reports = [json.loads((Path(folder) / "results.json").read_text()) for folder in args.runs]
    first = reports[0]
    for folder, report in zip(args.runs, reports):
        for key in ("dataset", "method", "seed", "n_samples", "calib_cells", "effect_scales"):
            if report[key] != first[key]:
                raise ValueError(f"{folder} differs from {args.runs[0]} in {key!r}; only runs of one setting merge.")
    in_place = len(args.runs) == 1 and Path(args.runs[0]).resolve() == Path(args.out).resolve()
    merged = {**first, "command": first["command"] if in_place else args.command,
              "commands": [c for r in reports for c in r.get("commands", [r["command"]])], "results": {}}
    for folder, report in zip(args.runs, reports):
        overlap = sorted(set(merged["results"]) & set(report["results"]))
        if overlap:
            raise ValueError(f"{folder} repeats contexts {overlap}; merge runs of disjoint --contexts.")
        merged["results"].update(report["results"])
    keys = [k for k, v in next(iter(merged["results"].values())).items() if isinstance(v, float)]
    merged["means"] = {k: float(np.mean([r[k] for r in merged["results"].values()])) for k in keys}
    out = Path(args.out)
    (out / "predictions").mkdir(parents=True, exist_ok=True)
    for folder in args.runs:
        for file in sorted((Path(folder) / "predictions").glob("*.h5ad")):
            if (out / "predictions" / file.name).resolve() != file.resolve():  # merge A --out A re-renders A
                shutil.copyfile(file, out / "predictions" / file.name)
    _write_report(out, merged)
    print(_markdown(merged))
    return merged


def run_compare(args: argparse.Namespace) -> str:
    """Per-context tables of every method in the given run folders (first occurrence of a label wins)."""
    methods: dict[str, dict[str, dict]] = {}
    for folder in args.runs:
        for label, per_context in _method_results(Path(folder)).items():
            methods.setdefault(label, per_context)
    contexts = list(next(iter(methods.values())))
    lines = [f"`{args.command}`", ""]
    for metric in args.metrics.split(","):
        lines += [f"**{metric}**", "", "| method | " + " | ".join(contexts) + " | mean |",
                  "|---" * (len(contexts) + 2) + "|"]
        for label, per_context in methods.items():
            values = [per_context.get(c, {}).get(metric) for c in contexts]
            known = [v for v in values if v is not None]
            mean = float(np.mean(known)) if len(known) == len(contexts) else None
            lines.append(f"| {label} | " + " | ".join("–" if v is None else f"{v:.3f}" for v in values)
                         + f" | {'–' if mean is None else f'{mean:.3f}'} |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    return text


def _add_split_arguments(parser: argparse.ArgumentParser) -> None:
    """Data, split, method and run options shared by ``oos`` and ``sweep``."""
    parser.add_argument("--data", required=True)
    parser.add_argument("--preprocess", default=None)
    parser.add_argument("--context-key", default="cell_type")
    parser.add_argument("--contexts", default=None)
    parser.add_argument("--exclude-contexts", default=None)
    parser.add_argument("--encoder", default="vae")
    parser.add_argument("--encoder-option", action="append")
    parser.add_argument("--manipulator-option", action="append")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="the pipeline's device (cpu, cuda); a VAE without its own device option trains there")
    parser.add_argument("--quiet", action="store_true")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="task", required=True)
    oos = sub.add_parser("oos", help="OOS metrics and calibration per held-out context")
    _add_split_arguments(oos)
    oos.add_argument("--out", required=True)
    oos.add_argument("--n-samples", type=int, default=20, help="sampled populations for calibration")
    oos.add_argument("--calib-cells", type=int, default=200, help="source cells per population (subsampled, seeded)")
    oos.add_argument("--effect-scales", default="1,0",
                     help="context_effect_scale values scored (first: headline; 0: the model's own spread alone)")
    sweep = sub.add_parser("sweep", help="one fit per context, metrics for a grid of sampling settings")
    _add_split_arguments(sweep)
    sweep.add_argument("--out", default=None, help="JSON file")
    sweep.add_argument("--grid", action="append", help="key=v1,v2 (JSON values), e.g. guidance_scale=1,2,3")
    speed = sub.add_parser("speed", help="sampling speed, 50 DDIM steps")
    speed.add_argument("--threads", type=int, default=2)
    speed.add_argument("--device", default="cpu")
    speed.add_argument("--n-cells", type=int, default=2000)
    speed.add_argument("--n-latent", type=int, default=100)
    speed.add_argument("--manipulator-option", action="append")
    speed.add_argument("--out", default=None)
    merge = sub.add_parser("merge", help="one oos folder from oos folders run per context (e.g. in parallel); "
                                         "'merge A --out A' rewrites A's results.md and calibration.png")
    merge.add_argument("runs", nargs="+")
    merge.add_argument("--out", required=True)
    compare = sub.add_parser("compare", help="side-by-side per-context tables from run folders")
    compare.add_argument("runs", nargs="+")
    compare.add_argument("--metrics", default=",".join(COMPARED))
    args = parser.parse_args(argv)
    args.command = "python benchmarks/bench_diffusion.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    if args.task == "oos":
        args.effect_scales = [float(v) for v in args.effect_scales.split(",")]
        args.headline_scale = args.effect_scales[0]
    {"oos": run_oos, "sweep": run_sweep, "speed": run_speed, "merge": run_merge, "compare": run_compare}[args.task](args)


if __name__ == "__main__":
    main()
