"""Diffusion manipulator benchmarks: Kang OOS metrics + calibration of the mean, and sampling speed.

    # OOS (docs/evaluation.md) with calibration, one fit per held-out cell type:
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

``oos`` is the harness itself: it calls ``virtualcell.evaluate.run_benchmark`` (protocol ``oos``, the
diffusion manipulator, the baselines and noise ceiling, ``n_samples=--n-samples`` for ``coverage90`` and
the interval width per context, with the harness's calibration rules), so its numbers equal
``virtualcell benchmark oos --manipulator diffusion --n-samples N`` with the same options. ``merge`` joins
harness folders of disjoint ``--contexts``; ``sweep`` scores sampling settings of one fit per context
with the same metrics (v2, PCA of the cells outside the context).
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


def run_oos(args: argparse.Namespace) -> dict:
    """The harness itself (``virtualcell.evaluate.run_benchmark``, protocol ``oos``) with the diffusion
    manipulator and ``--n-samples`` populations per held-out context for ``coverage90``."""
    import torch

    from virtualcell.evaluate import run_benchmark

    torch.set_num_threads(args.threads)
    report = run_benchmark(args.data, "oos", encoder={"name": args.encoder, **_options(args.encoder_option)},
                           manipulator={**DEFAULT_MANIPULATOR, **_options(args.manipulator_option)},
                           context_key=args.context_key, contexts=args.contexts.split(",") if args.contexts else None,
                           exclude_contexts=args.exclude_contexts.split(",") if args.exclude_contexts else (),
                           preprocess=None if args.preprocess in (None, "none") else args.preprocess, seed=args.seed,
                           out=args.out, baselines=not args.no_baselines, device=args.device, n_samples=args.n_samples,
                           progress=not args.quiet, overwrite=True, command=args.command)
    print((Path(args.out) / "results.md").read_text())
    return report


def _oos_split(args: argparse.Namespace):
    """The docs/evaluation.md OOS split of ``args.data``: (x [cells, genes], genes, obs, tasks)."""
    import anndata as ad

    from virtualcell.evaluate.cells import prepare_cells
    from virtualcell.pipelines.splits import oos_tasks

    adata = ad.read_h5ad(args.data)
    preprocess = None if args.preprocess in (None, "none") else args.preprocess
    x, genes, _ = prepare_cells(adata, preprocess)
    tasks = oos_tasks(adata.obs, context_key=args.context_key, condition_key="condition", control="control",
                      target="stimulated", contexts=args.contexts.split(",") if args.contexts else None,
                      exclude_contexts=args.exclude_contexts.split(",") if args.exclude_contexts else (), min_cells=2)
    return x, genes, adata.obs, tasks


def run_sweep(args: argparse.Namespace) -> dict:
    """One fit per held-out context, then the docs/evaluation.md metrics for a grid of sampling settings.

    Sampling settings leave the weights as they are (``DiffusionManipulator.with_sampling``), so a
    grid costs one fit plus one prediction per setting. Grid: ``--grid key=v1,v2 ...`` (product).
    """
    import itertools

    import torch

    from virtualcell.evaluate.cells import aligned_cells, subset_cells
    from virtualcell.execution import seed_everything
    from virtualcell.metrics import score_prediction
    from virtualcell.pipelines.holdout import unit_truth
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
    keys = ["r2_mean_all", "r2_mean_top100", "pearson_delta", "edistance_ratio", "mmd_ratio", "std_ratio_top100",
            "r2_var_top100"]
    for task in tasks:
        truth = unit_truth(x, genes, task, n_top=100, n_pcs=50, seed=args.seed)   # PCA of the cells outside the context
        pipe = PerturbationPipeline(encoder=dict(encoder), manipulator=dict(manipulator), preprocess=None,
                                    device=args.device)
        seed_everything(args.seed)
        pipe.fit(subset_cells(x, obs, genes, task.train, columns), condition_key="condition", control="control",
                 context_key=args.context_key, seed=args.seed, progress=not args.quiet)
        fitted = pipe.manipulator
        source = subset_cells(x, obs, genes, task.source, columns)
        for change in settings:
            pipe.manipulator = fitted.with_sampling(**change) if change else fitted
            pred = aligned_cells(pipe.predict(source, target=task.target, seed=args.seed), genes)
            scores = score_prediction(pred, truth)
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
    """Merge harness folders of disjoint ``--contexts`` (same data and method, e.g. one GPU process per
    context) into ``--out``: every label's per-context results, their means and medians recomputed,
    the runs' commands under ``commands``; predictions are copied."""
    import shutil

    from virtualcell.evaluate import report as reporting
    from virtualcell.evaluate.summary import summarise

    reports = [json.loads((Path(folder) / "results.json").read_text()) for folder in args.runs]
    first = reports[0]
    for folder, report in zip(args.runs, reports):
        for key in ("dataset", "method", "seed", "protocol", "metrics"):
            if report.get(key) != first.get(key):
                raise ValueError(f"{folder} differs from {args.runs[0]} in {key!r}; only runs of one setting merge.")
    merged = {**first, "command": args.command, "commands": [c for r in reports for c in r.get("commands", [r["command"]])],
              "contexts": [], "results": {label: {} for label in first["results"]}, "degs": {}}
    for folder, report in zip(args.runs, reports):
        overlap = sorted(set(merged["contexts"]) & set(report["contexts"]))
        if overlap:
            raise ValueError(f"{folder} repeats contexts {overlap}; merge runs of disjoint --contexts.")
        merged["contexts"] += report["contexts"]
        merged["degs"].update(report["degs"])
        for label, per in report["results"].items():
            merged["results"].setdefault(label, {}).update(per)
    summarise(merged)
    out = Path(args.out)
    (out / "predictions").mkdir(parents=True, exist_ok=True)
    for folder in args.runs:
        for file in sorted((Path(folder) / "predictions").glob("*.h5ad")):
            if (out / "predictions" / file.name).resolve() != file.resolve():
                shutil.copyfile(file, out / "predictions" / file.name)
    reporting.write_json(out / "results.json", merged)
    reporting.write_text(out / "results.md", reporting.markdown_report(merged))
    print(reporting.markdown_report(merged))
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
    oos = sub.add_parser("oos", help="the harness (virtualcell benchmark oos) with the diffusion manipulator "
                                     "and --n-samples populations per context for coverage90")
    _add_split_arguments(oos)
    oos.add_argument("--out", required=True)
    oos.add_argument("--n-samples", type=int, default=20, help="sampled populations for coverage90 (>= 2)")
    oos.add_argument("--no-baselines", action="store_true", help="only the method and the noise ceiling")
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
    {"oos": run_oos, "sweep": run_sweep, "speed": run_speed, "merge": run_merge, "compare": run_compare}[args.task](args)


if __name__ == "__main__":
    main()
