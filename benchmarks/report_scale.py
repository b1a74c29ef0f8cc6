"""RESULTS.md section: training at atlas scale (issue 23), from benchmarks/results/scale/*.json only.

    python benchmarks/report_scale.py          # prints the markdown

The JSON is written by ``benchmarks/bench_scale.py`` (one section per run: loader, memory_<cells>,
ddp, kang, plan); every table is headed by the command that produced it and the issue's goal with
met / missed. Nothing here is typed by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from markdown import markdown_table  # noqa: E402
from scale_harness_table import harness_section  # noqa: E402

FOLDER = Path(__file__).resolve().parent / "results" / "scale"
#: the issue's goals
LOADER_GOAL = 50_000          # cells/s per process
RSS_GOAL_MB = 2048            # peak RSS of the 2M-cell fit
DDP_GOAL = 0.02               # relative validation-loss difference, 1 vs 2 processes
KANG_GOAL = 0.005             # |disk - memory| on R2 and pearson_delta, same seed
FLAT_GROWTH = 0.10            # "flat": the peak grows by less than this fraction from the smallest to the largest run

INTRO = """## Training at atlas scale (issue 23)

`benchmarks/bench_scale.py` on this machine (2 shared CPU cores; no GPU was lent): simulated sparse
counts, 2,000 genes, 5% non-zero, `log1p` recipe applied per batch, stores in /tmp. Design and
caveats: docs/scale.md.
"""


def _load(name: str) -> dict | None:
    path = FOLDER / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def _loader(run: dict) -> str:
    ours = run["virtualcell_h5ad_block64_cells_per_s"]
    rows = [["ours, h5ad, blocks of 64 x pools of 64 (training default)", ours],
            ["ours, zarr, same blocks", run["virtualcell_zarr_block64_cells_per_s"]],
            ["anndata backed, sequential slices", run["anndata_backed_sequential_cells_per_s"]],
            ["anndata backed, random batches", run["anndata_backed_random_cells_per_s"]],
            ["ours, per-cell random order (exact), h5ad", run["virtualcell_h5ad_random_cells_per_s"]],
            ["ours, per-cell random order (exact), zarr", run["virtualcell_zarr_random_cells_per_s"]],
            ["annbatch", run["annbatch"]]]
    return "\n".join([
        "### Loader throughput", "",
        f"`python benchmarks/bench_scale.py loader --cells {run['cells']}` (batches of {run['batch_size']}, "
        f"{run['genes']} genes)", "",
        f"Goal: >= {LOADER_GOAL:,} cells/s per process: {_verdict(ours >= LOADER_GOAL)} ({ours:,} cells/s).", "",
        markdown_table(["loader", "cells/s"], [[r[0], f"{r[1]:,}" if isinstance(r[1], int) else r[1]] for r in rows]),
        ""])


def _peaks(run: dict) -> str:
    """The peak RSS of a size: the median run's, with every run's when it was repeated."""
    every = run.get("peak_rss_mb_runs", [])
    return f"{run['peak_rss_mb']:,.0f}" + (f" ({', '.join(f'{p:,.0f}' for p in every)})" if len(every) > 1 else "")


def _memory(runs: list[dict], plan: dict | None) -> str:
    runs = sorted(runs, key=lambda r: r["cells"])
    rows = [[f"{r['cells']:,}", f"{r['file_mb']:,}", f"{r['seconds']:.1f}", f"{r['cells_per_s']:,}" if "cells_per_s" in r
             else "–", f"{r['train_cells_per_s']:,.0f}", _peaks(r), r.get("threads", "–"),
             f"`{r['command']}`" if "command" in r else "–"] for r in runs]
    largest, smallest = runs[-1], runs[0]
    below = all(r["peak_rss_mb"] <= RSS_GOAL_MB for r in runs)
    growth = largest["peak_rss_mb"] - smallest["peak_rss_mb"]
    flat = growth <= FLAT_GROWTH * smallest["peak_rss_mb"]
    model = (plan or {}).get("measured", {}).get("rss_model", {})
    lines = ["### Memory of a fit from disk (VAE + latent arithmetic)", "",
             f"VAE {largest['vae']}, {largest['epochs']} epoch, a fresh process per size. Goal: peak RSS <= "
             f"{RSS_GOAL_MB:,} MB at 2,000,000 cells, flat in the number of cells.", "",
             markdown_table(["cells", "file MB", "seconds", "cells/s (whole fit)", "training cells/s",
                             "peak RSS MB (median; every run)", "threads", "command"], rows), "",
             f"- <= {RSS_GOAL_MB:,} MB at every size (largest: {largest['cells']:,} cells): {_verdict(below)} "
             f"({largest['peak_rss_mb']:,} MB)."]
    if len(runs) > 1:
        lines.append(f"- flat (peak grows < {FLAT_GROWTH:.0%} from {smallest['cells']:,} to {largest['cells']:,} "
                     f"cells): {_verdict(flat)} (+{growth:.0f} MB)." + (
                         f" Least-squares line over the runs: {model['peak']['fixed_mb']:,} MB + "
                         f"{model['peak']['mb_per_million_cells']} MB per million cells." if model.get("peak") else ""))
    terms = [f"{term} {model[term]['mb_per_million_cells']}" for term in ("obs", "labels", "codes_and_ids") if term in model]
    if terms:
        lines.append("- the growth by phase, MB per million cells: " + ", ".join(terms) + " (RSS at the end of the "
                     "phase minus the previous one; what each holds: docs/scale.md).")
    phase_names = [p["phase"] for p in largest.get("phases", [])]
    if phase_names:
        lines += ["", "Per phase (seconds / RSS at its end / peak so far, MB):", "",
                  markdown_table(["cells", *phase_names], [[f"{r['cells']:,}", *(
                      f"{p['seconds']} / {p['rss_mb']:.0f} / {p['peak_rss_mb']:.0f}" for p in r["phases"])]
                      for r in runs if [p["phase"] for p in r.get("phases", [])] == phase_names])]
    return "\n".join(lines) + "\n"


def _ddp(run: dict) -> str:
    diff = run["val_loss_rel_diff"]
    return "\n".join([
        "### Data-parallel (gloo, CPU)", "",
        f"`python benchmarks/bench_scale.py ddp --cells {run['cells']}` (global batch {run['global_batch']}, "
        f"{run['epochs']} epochs, torchrun)", "",
        markdown_table(["processes", "validation loss", "wall s"],
                       [[n, f"{run[f'nproc{n}']['val_loss']:.2f}", f"{run[f'nproc{n}']['wall_s']:.1f}"] for n in (1, 2)]), "",
        f"Goal: same validation loss within {DDP_GOAL:.0%}: {_verdict(diff <= DDP_GOAL)} ({diff:.3%} apart). "
        "On 2 shared cores the wall-clock measures the overhead of a second process, not a speed-up.", ""])


def _kang(run: dict) -> str:
    if "units" not in run:
        return "### Kang valid: from disk vs in memory\n\nThe kang.json predates the per-unit, per-seed run; rerun it.\n"
    lines = ["### Kang valid: from disk vs in memory (same seed)", "",
             f"`{run['command']}` (VAE defaults, {run['max_epochs']} epochs, + latent arithmetic; disk options "
             f"`{json.dumps(run['disk_options'])}`)", "",
             f"Goal: |from disk - in memory| <= {KANG_GOAL} on R² and pearson_delta for the same seed.", ""]
    rows, verdicts = [], []
    for unit, res in run["units"].items():
        for label in ("memory", "disk_exact", "disk_blocks"):
            for r in res[label]:
                rows.append([unit, label, r["seed"], f"{r['r2']:.4f}", f"{r['pearson_delta']:.4f}", f"{r['seconds']:.1f}"])
        spread = res["memory_seed_range"]
        for label in ("disk_exact", "disk_blocks"):
            diff = res[f"{label}_max_abs_diff"]
            ok = max(diff.values()) <= KANG_GOAL
            signed = {metric: sum(d[metric] - m[metric] for d, m in zip(res[label], res["memory"])) / len(res["memory"])
                      for metric in ("r2", "pearson_delta")}
            verdicts.append([unit, label, f"{diff['r2']:.4f}", f"{diff['pearson_delta']:.4f}",
                             f"{signed['r2']:+.4f} / {signed['pearson_delta']:+.4f}",
                             f"{spread['r2']:.4f}", f"{spread['pearson_delta']:.4f}", _verdict(ok).strip("*")])
    lines += [markdown_table(["held out", "fit", "seed", "R² (means)", "pearson_delta", "seconds"], rows), "",
              markdown_table(["held out", "from disk", "largest ΔR² (abs, same seed)", "largest Δpearson_delta (abs)",
                              "mean Δ R² / pearson_delta (disk - memory)", "in-memory seed range R²",
                              "in-memory seed range pearson_delta", "goal"], verdicts), "",
              "`disk_exact` reads each minibatch's rows in the in-memory order; `disk_blocks` is the atlas setting "
              "(shuffled blocks): another order of the same cells, so another SGD path; compare its difference "
              "with the in-memory fit's own seed-to-seed range.", ""]
    return "\n".join(lines)


def _plan(run: dict) -> str:
    if "measured" not in run:
        return "### Costed plan for Tahoe-100M\n\nThe plan.json predates the costed plan; rerun it.\n"
    m, h = run["measured"], run["h100_estimate"]
    rows = [[name.replace("_", " "), f"{e['read_s']:,.0f}", f"{e['compute_s']:,.0f}", f"{e['epoch_s']:,.0f}",
             f"{e['epoch_s'] / 60:,.1f}", e["bound"], f"{e['storage_gb_per_s']:.2f}"] for name, e in run["epoch"].items()]
    lines = ["### Costed plan for Tahoe-100M", "",
             f"`{run['command']}`: {run['cells']:,} cells x {run['genes']:,} HVGs, the default VAE "
             f"({run['vae']}, {run['parameters']:,} parameters, {run['macs_per_cell_forward']:,} multiply-adds per "
             f"cell forward, {run['flops_per_cell_training_step']:,} FLOP per cell per training step = 6 x MACs).", "",
             f"- Measured here: read {m['read_cells_per_s_per_process']:,} cells/s per process ({m['read_source']}), "
             f"{m['bytes_per_cell_on_disk']} bytes per cell on disk; CPU training step "
             f"{m['cpu_vae_step_s_per_cell'] * 1e3:.3f} ms per cell (batch {m['cpu_vae_step_batch']}, "
             f"{run['threads']} thread).",
             f"- **H100: estimate, not measured** (no GPU lent): {h['assumed_fraction_of_bf16_dense_peak']:.0%} of the "
             f"dense bf16 peak ({h['peak_tflops']['bf16_dense']:,} TFLOP/s) = {h['assumed_sustained_tflops']} TFLOP/s "
             f"sustained -> {h['cells_per_s_estimate']:,} cells/s per GPU. One reader process keeps up with the GPU "
             f"only below {h['break_even_tflops_for_one_reader']} TFLOP/s sustained, so the epoch is read-bound "
             f"unless each GPU gets {h['readers_per_gpu_to_feed_it']} reader processes (not built: `DiskLoader` reads in the "
             "training process, one reader per GPU today).", "",
             markdown_table(["configuration", "read s", "compute s", "epoch s", "epoch min", "bound",
                             "storage GB/s needed"], rows), ""]
    mem, model = run.get("memory_per_process_mb"), m.get("rss_model", {})
    if mem:
        terms = [[term, f"{model[term]['mb_per_million_cells']:.0f}", f"{mem[f'{term}_at_100M']:,}"]
                 for term in ("obs", "labels", "codes_and_ids") if f"{term}_at_100M" in mem]
        lines += [f"Memory per process at 100M cells, the measured line extended (fixed + per cell, from the "
                  f"runs at {', '.join(f'{c:,}' for c in model['runs_cells'])} cells): "
                  f"**{mem['measured_line_at_100M']:,} MB**. The per-cell terms, measured by phase:", "",
                  markdown_table(["term", "MB per million cells", "MB at 100M"], terms), "",
                  f"Latent arithmetic (and control, mean-shift, mean-perturbation) never holds the latent codes: it is "
                  f"fitted on their per-group sums, streamed. A manipulator that needs every code (or an mlp-decoder "
                  f"trained from disk) holds them, float32 [cells, n_latent]: "
                  f"{mem['codes_float32_at_100M_n_latent_10']:,} MiB at 10 latents and "
                  f"{mem['codes_float32_at_100M_n_latent_100']:,} MiB at the default 100.", ""]
    if "codes_and_means_passes_hours_at_100M_cpu" in run:
        lines += [f"After training, the fit makes one sequential pass over every cell (latent codes, response "
                  f"means): {run['codes_and_means_passes_hours_at_100M_cpu']} h at 100M cells at this CPU's "
                  f"measured rate, >= {run['codes_and_means_passes_s_at_100M_read_bound']:,} s at the loader's "
                  "read rate; every data-parallel process makes it in full today.", ""]
    return "\n".join(lines)


def render() -> str:
    parts = [INTRO]
    loader, ddp, kang, plan = (_load(n) for n in ("loader", "ddp", "kang", "plan"))
    memory = [json.loads(p.read_text()) for p in sorted(FOLDER.glob("memory_*.json"))]
    if loader:
        parts.append(_loader(loader))
    if memory:
        parts.append(_memory(memory, plan))
    if ddp:
        parts.append(_ddp(ddp))
    if kang:
        parts.append(_kang(kang))
    harness = harness_section()
    if harness:
        parts.append(harness)
    if plan:
        parts.append(_plan(plan))
    return "\n".join(parts)


if __name__ == "__main__":
    print(render())
