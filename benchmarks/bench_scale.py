"""Training at atlas scale (issue 23): loader throughput, memory of a fit from disk, DDP, Kang, Tahoe plan.

Each section is one short run; results go to benchmarks/results/scale/
and simulated stores to /tmp (never the repository):

    python benchmarks/bench_scale.py loader  --cells 200000        # cells/s: ours, annbatch, anndata backed
    python benchmarks/bench_scale.py memory  --cells 200000        # peak RSS of VAE + latent arithmetic from disk
    python benchmarks/bench_scale.py ddp     --cells 20000         # 1 vs 2 gloo processes: val loss, wall-clock
    python benchmarks/bench_scale.py kang --epochs 10              # Kang valid CD4T / B OOS: disk vs memory, seeds 0-2
    python benchmarks/bench_scale.py plan                          # Tahoe-100M cost from the measured costs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "scale"
GENES, DENSITY = 2000, 0.05


def simulated_store(n_cells: int, folder: Path = Path("/tmp/vc_scale"), n_types: int = 4) -> Path:
    """Sparse counts n_cells x 2,000 (5% non-zero, CSR h5ad, written in chunks), 2 conditions x ``n_types`` cell types."""
    import anndata as ad
    import h5py
    import pandas as pd

    path = folder / (f"sim_{n_cells}.h5ad" if n_types == 4 else f"sim_{n_cells}_{n_types}types.h5ad")
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = rng.gamma(0.6, 2.0, size=(n_types, GENES)) + 0.05
    effect = np.where(rng.random(GENES) < 0.1, rng.normal(0, 1.0, GENES), 0.0)
    condition = np.where(rng.random(n_cells) < 0.5, "control", "stimulated")
    cell_type = rng.integers(0, n_types, n_cells)
    per_row = int(GENES * DENSITY)
    tmp = path.with_suffix(".tmp.h5ad")
    ad.AnnData(obs=pd.DataFrame({"condition": pd.Categorical(condition),
                                 "cell_type": pd.Categorical([f"type{t}" for t in cell_type])},
                                index=[f"c{i}" for i in range(n_cells)]),
               var=pd.DataFrame(index=[f"g{j}" for j in range(GENES)])).write_h5ad(tmp)
    with h5py.File(tmp, "a") as f:
        if "X" in f:
            del f["X"]
        group = f.create_group("X")
        group.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": (n_cells, GENES)})
        data = group.create_dataset("data", (0,), np.float32, maxshape=(None,), chunks=(1 << 16,))
        indices = group.create_dataset("indices", (0,), np.int32, maxshape=(None,), chunks=(1 << 16,))
        indptr = np.arange(n_cells + 1, dtype=np.int64) * per_row
        for begin in range(0, n_cells, 50_000):
            end = min(begin + 50_000, n_cells)
            stride = GENES // per_row   # one random gene in each window of `stride` genes: sorted, distinct
            cols = np.arange(per_row) * stride + rng.integers(0, stride, size=(end - begin, per_row))
            rate = base[cell_type[begin:end, None], cols] * np.exp(
                effect[cols] * (condition[begin:end, None] == "stimulated"))
            values = (rng.poisson(rate) + 1).astype(np.float32)
            for dset, part in ((data, values.ravel()), (indices, cols.astype(np.int32).ravel())):
                dset.resize((dset.shape[0] + part.size,))
                dset[-part.size:] = part
        group.create_dataset("indptr", data=indptr)
    tmp.rename(path)
    return path


def save(name: str, result: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def bench_loader(n_cells: int, batch_size: int = 128, budget: int = 100_000) -> dict:
    """Cells/s of one epoch's first ``budget`` cells, batches of 128, recipe log1p, 2,000 genes."""
    import anndata as ad

    from virtualcell.data.preprocess import Preprocessing
    from virtualcell.data.streaming import batch_recipe
    from virtualcell.train.disk_loader import DiskLoader, DiskRows

    path = simulated_store(n_cells)
    zarr_path = Path(str(path).replace(".h5ad", ".zarr"))
    if not zarr_path.exists():
        ad.read_h5ad(path).write_zarr(zarr_path)
    names = [f"g{j}" for j in range(GENES)]
    recipe = batch_recipe(Preprocessing.from_spec("log1p"), names)
    out: dict = {"cells": n_cells, "genes": GENES, "batch_size": batch_size, "density": DENSITY}

    def timed(batches, limit: int = budget) -> float:
        seen, tick = 0, time.perf_counter()
        for batch in batches:
            seen += len(batch)
            if seen >= limit:
                break
        return round(seen / (time.perf_counter() - tick))

    for label, store in (("virtualcell_h5ad", path), ("virtualcell_zarr", zarr_path)):
        loader = DiskLoader(DiskRows(store, transform=recipe), batch_size=batch_size, block_size=64, pool_blocks=64)
        out[f"{label}_block64_cells_per_s"] = timed(loader.iterate(0))
        exact = DiskLoader(DiskRows(store, transform=recipe), batch_size=batch_size, block_size=1, pool_blocks=1)
        out[f"{label}_random_cells_per_s"] = timed(exact.iterate(0), 5_000)
    try:
        import annbatch  # noqa: F401
        out["annbatch"] = "installed; not wired in this run"
    except ImportError:
        out["annbatch"] = (f"not installable here: annbatch needs Python >= 3.12, this venv is "
                           f"{sys.version_info.major}.{sys.version_info.minor}")
    backed = ad.read_h5ad(path, backed="r")
    rng = np.random.default_rng(0)

    def backed_batches(random: bool):
        begin = 0
        while True:
            rows = np.sort(rng.choice(n_cells, batch_size, replace=False)) if random else np.arange(begin, begin + batch_size)
            begin += batch_size
            yield recipe(backed.X[rows] if random else backed.X[rows[0]:rows[-1] + 1])

    out["anndata_backed_random_cells_per_s"] = timed(backed_batches(True), 5_000)
    out["anndata_backed_sequential_cells_per_s"] = timed(backed_batches(False))
    return out


def bench_memory(n_cells: int, epochs: int, threads: int = 1) -> dict:
    """Peak RSS of PerturbationPipeline(vae, latent-arithmetic).fit(path) in a fresh process, per phase.

    The phases are timed by wrapping the public steps of the fit (annotations read, VAE training,
    manipulator fit); "codes_and_means" is the one sequential pass between training and the manipulator's fit on the
    sums of the codes (``fit_sums``: latent arithmetic never holds the codes).
    """
    path = simulated_store(n_cells)
    code = f"""
import time
clock = [time.perf_counter()]
import json
import torch
torch.set_num_threads({threads})
import virtualcell as vc
import virtualcell.train.disk_cells as cells

def rss():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return round(int(fields["VmRSS"].split()[0]) / 1024, 1)

def peak():   # VmHWM: this process's own high-water mark (ru_maxrss would include the forking parent's)
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return round(int(fields["VmHWM"].split()[0]) / 1024, 1)

phases = []
def mark(name):
    now = time.perf_counter()
    phases.append({{"phase": name, "seconds": round(now - clock[0], 1), "rss_mb": rss(), "peak_rss_mb": peak()}})
    clock[0] = now

def timed(name, fn):
    def wrapped(*args, **kwargs):
        mark(f"before {{name}}")
        out = fn(*args, **kwargs)
        mark(name)
        return out
    return wrapped

mark("import")
pipe = vc.PerturbationPipeline(encoder={{"name": "vae", "n_hidden": 128, "n_latent": 10, "max_epochs": {epochs},
                                         "batch_size": 512, "validation_fraction": 0.02}}, preprocess="log1p")
names = {{"before annotations": "build", "before train_vae": "genes_and_recipe", "before manipulator": "codes_and_means"}}
cells.read_annotations = timed("annotations", cells.read_annotations)
pipe.encoder.fit = timed("train_vae", pipe.encoder.fit)
pipe.manipulator.fit_sums = timed("manipulator", pipe.manipulator.fit_sums)   # streamed codes: fitted on their sums
tick = time.perf_counter()
pipe.fit({str(path)!r}, context_key="cell_type", progress=False)
mark("rest")
seconds = time.perf_counter() - tick
rec = pipe.encoder.history.record()
for p in phases:
    p["phase"] = names.get(p["phase"], p["phase"])
print(json.dumps({{"seconds": round(seconds, 1), "cells_per_s": round({n_cells} / seconds),
                  "train_cells_per_s": rec["cells_per_s"], "peak_rss_mb": peak(), "torch_threads": torch.get_num_threads(),
                  "phases": phases}}))
"""
    env = {**os.environ, "VIRTUALCELL_PROGRESS": "0", "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return {"cells": n_cells, "genes": GENES, "epochs": epochs, "file_mb": round(path.stat().st_size / 2**20),
            "vae": "n_hidden 128, n_latent 10, batch 512", "threads": threads,
            "command": f"python benchmarks/bench_scale.py memory --cells {n_cells} --epochs {epochs} --threads {threads}",
            **json.loads(done.stdout.strip().splitlines()[-1])}


def repeated_memory(n_cells: int, epochs: int, threads: int, repeats: int) -> dict:
    """``bench_memory`` in ``repeats`` fresh processes: the run with the median peak RSS, and every run's peak
    (``peak_rss_mb_runs``: the allocator's layout varies from run to run by tens of MB)."""
    runs = sorted((bench_memory(n_cells, epochs, threads) for _ in range(max(repeats, 1))), key=lambda r: r["peak_rss_mb"])
    median = runs[(len(runs) - 1) // 2]
    command = median["command"] + (f" --repeats {repeats}" if repeats > 1 else "")
    return {**median, "command": command, "peak_rss_mb_runs": [r["peak_rss_mb"] for r in runs]}


def bench_ddp(n_cells: int) -> dict:
    """1 vs 2 gloo processes (torchrun), same global batch (256) and samples (2 epochs): val loss, wall-clock."""
    worker = Path(__file__).parent.parent / "tests" / "train" / "test_distributed.py"
    namespace: dict = {}
    exec(compile(worker.read_text().split("@pytest.fixture")[0], str(worker), "exec"), namespace)
    folder = Path("/tmp/vc_scale/ddp")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "worker.py").write_text(namespace["WORKER"].replace('"64"', '"256"'))
    path = simulated_store(n_cells)
    out: dict = {"cells": n_cells, "genes": GENES, "global_batch": 256, "epochs": 2}
    for nproc in (1, 2):
        tick = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                               f"--nproc-per-node={nproc}", str(folder / "worker.py"), str(path),
                               str(folder / f"{nproc}.json"), "", "256", "2", "-1"],
                              capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(2 // nproc)})
        if done.returncode:
            raise SystemExit(done.stderr[-3000:])
        result = json.loads((folder / f"{nproc}.json").read_text())
        out[f"nproc{nproc}"] = {"val_loss": round(result["epochs"][-1]["val_loss"], 4),
                                "wall_s": round(time.perf_counter() - tick, 1)}
    out["val_loss_rel_diff"] = round(abs(out["nproc2"]["val_loss"] / out["nproc1"]["val_loss"] - 1), 5)
    return out


KANG_DISK = {"disk_exact": {"exact": True}, "disk_blocks": {"exact": False, "block_size": 64, "pool_blocks": 64}}


def bench_kang(max_epochs: int, units: tuple[str, ...] = ("CD4T", "B"), seeds: tuple[int, ...] = (0, 1, 2),
               threads: int = 1) -> dict:
    """Kang valid, each unit's stimulated cells held out: VAE + latent arithmetic in memory vs from the h5ad.

    Per unit and seed: in memory, from disk in the in-memory order (``disk_exact``) and from disk in
    shuffled blocks (``disk_blocks``, the atlas setting, passed explicitly; ``"exact": False`` keeps the
    block loader even though this small file fits in one pool, which would otherwise be read whole). Per unit: the largest
    |disk - memory| over seeds (same seed) and the in-memory fit's seed-to-seed range (max - min).
    """
    import anndata as ad
    import torch

    import virtualcell as vc
    from virtualcell.metrics.perturbation import pearson_delta, r2_mean

    torch.set_num_threads(threads)
    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "kang_pbmc_scgen_valid.h5ad"
    adata = ad.read_h5ad(path)
    out: dict = {"split": "Kang valid, each unit's stimulated cells held out", "max_epochs": max_epochs,
                 "seeds": list(seeds), "threads": threads, "disk_options": KANG_DISK,
                 "command": (f"python benchmarks/bench_scale.py kang --epochs {max_epochs} --units {','.join(units)} "
                             f"--seeds {','.join(map(str, seeds))} --threads {threads}"), "units": {}}
    for unit in units:
        held = ((adata.obs["cell_type"] == unit) & (adata.obs["condition"] == "stimulated")).to_numpy()
        train = adata[~held].copy()
        train_path = Path(f"/tmp/vc_scale/kang_train_{unit}.h5ad")
        train_path.parent.mkdir(parents=True, exist_ok=True)
        train.write_h5ad(train_path)
        ctrl = adata[((adata.obs["cell_type"] == unit) & (adata.obs["condition"] == "control")).to_numpy()].copy()
        stim, ctrl_x = np.asarray(adata[held].X.toarray()), np.asarray(ctrl.X.toarray())
        runs: dict = {"memory": [], "disk_exact": [], "disk_blocks": []}
        for seed in seeds:
            for label, data, disk in (("memory", train, None), ("disk_exact", str(train_path), KANG_DISK["disk_exact"]),
                                      ("disk_blocks", str(train_path), KANG_DISK["disk_blocks"])):
                pipe = vc.PerturbationPipeline(encoder={"name": "vae", "max_epochs": max_epochs})
                tick = time.perf_counter()
                pipe.fit(data, context_key="cell_type", seed=seed, progress=False, disk=disk)
                pred = np.asarray(pipe.predict(ctrl, target="stimulated").X)
                runs[label].append({"seed": seed, "r2": round(float(r2_mean(pred, stim)), 4),
                                    "pearson_delta": round(float(pearson_delta(pred, stim, ctrl_x)), 4),
                                    "seconds": round(time.perf_counter() - tick, 1)})
                print(unit, label, runs[label][-1], flush=True)
        summary: dict = {"held_out_cells": int(held.sum()), "train_cells": int(train.n_obs), **runs}
        for label in KANG_DISK:
            summary[f"{label}_max_abs_diff"] = {
                metric: round(max(abs(d[metric] - m[metric]) for d, m in zip(runs[label], runs["memory"])), 4)
                for metric in ("r2", "pearson_delta")}
        summary["memory_seed_range"] = {
            metric: round(max(r[metric] for r in runs["memory"]) - min(r[metric] for r in runs["memory"]), 4)
            for metric in ("r2", "pearson_delta")}
        out["units"][unit] = summary
    return out


#: H100 SXM dense (no sparsity) peaks, TFLOP/s (NVIDIA's datasheet); the plan assumes a fraction of the bf16 one
H100_PEAK_TFLOPS = {"bf16_dense": 989.0, "fp32_non_tensor": 67.0}
H100_ASSUMED_FRACTION = 0.05


def _memory_model(memory: list[dict]) -> dict:
    """Least-squares lines ``MB = fixed + slope * cells`` over the memory runs (MB, MB per million cells).

    ``peak``: the whole fit's peak RSS; the others split the per-cell growth by phase (RSS at the end of
    a phase minus at the end of the previous one): ``obs`` (annotations read), ``labels`` (per-cell
    labels, row pointer), ``codes_and_ids`` (what the pass after training keeps: int32 condition/context ids and
    resampling counts; latent arithmetic never holds the codes), and ``training_peak``.
    """
    if len(memory) < 2:
        return {}
    cells = np.array([m["cells"] for m in memory], dtype=float) / 1e6

    def grown(m: dict, phase: str, before: str) -> float | None:
        end, start = _phase(m, phase, "rss_mb"), _phase(m, before, "rss_mb")
        return None if end is None or start is None else end - start

    out: dict = {"runs_cells": [m["cells"] for m in memory]}
    for key, values in (("peak", [m["peak_rss_mb"] for m in memory]),
                        ("obs", [grown(m, "annotations", "build") for m in memory]),
                        ("labels", [grown(m, "genes_and_recipe", "annotations") for m in memory]),
                        ("codes_and_ids", [grown(m, "codes_and_means", "train_vae") for m in memory]),
                        ("training_peak", [_phase(m, "train_vae", "peak_rss_mb") for m in memory])):
        if None in values:
            continue
        slope, fixed = np.polyfit(cells, np.array(values, dtype=float), 1)
        out[key] = {"fixed_mb": round(float(fixed), 1), "mb_per_million_cells": round(float(slope), 1)}
    return out


def _phase(run: dict, name: str, key: str) -> float | None:
    return next((p[key] for p in run.get("phases", []) if p["phase"] == name), None)


def bench_plan(threads: int = 1) -> dict:
    """Tahoe-100M (100M cells, 2,000 HVGs) from the measured per-cell costs (loader, memory, VAE step).

    Measured: the loader's cells/s, the peak RSS runs (a line in the number of cells), one VAE
    training step on this CPU. Estimated (not measured, no GPU lent): the H100 step, from the model's
    FLOPs per cell at an assumed sustained fraction of the H100's dense bf16 peak.
    """
    loader = json.loads((RESULTS / "loader.json").read_text())
    memory = sorted((json.loads(p.read_text()) for p in RESULTS.glob("memory_*.json")), key=lambda m: m["cells"])
    step = _vae_step_seconds(threads=threads)
    cells, n_gpus = 100_000_000, 8
    read_rate = loader["virtualcell_h5ad_block64_cells_per_s"]
    flops_per_cell = 6 * step["macs_per_cell"]        # forward 2 x MACs, backward 4 x MACs
    sustained = H100_PEAK_TFLOPS["bf16_dense"] * H100_ASSUMED_FRACTION * 1e12
    gpu_rate = sustained / flops_per_cell
    bytes_per_cell = max(memory, key=lambda m: m["cells"])["file_mb"] * 2**20 / max(m["cells"] for m in memory) \
        if memory else None
    model = _memory_model(memory)
    readers = int(np.ceil(gpu_rate / read_rate))

    def epoch(processes: int, readers_per_process: int, compute_rate: float) -> dict:
        read_s = cells / (processes * readers_per_process * read_rate)
        compute_s = cells / (processes * compute_rate)
        return {"read_s": round(read_s, 1), "compute_s": round(compute_s, 1),
                "epoch_s": round(max(read_s, compute_s), 1), "bound": "read" if read_s >= compute_s else "compute",
                "storage_gb_per_s": round(cells / max(read_s, compute_s) * bytes_per_cell / 1e9, 2)
                if bytes_per_cell else None}

    out = {"cells": cells, "genes": GENES, "threads": threads, "command": f"python benchmarks/bench_scale.py plan --threads {threads}",
           "measured": {"read_cells_per_s_per_process": read_rate, "read_source": "loader.json virtualcell_h5ad_block64",
                        "cpu_vae_step_s_per_cell": step["cpu_s_per_cell"], "cpu_vae_step_batch": step["batch"],
                        "bytes_per_cell_on_disk": round(bytes_per_cell) if bytes_per_cell else None,
                        "rss_model": model},
           "vae": step["vae"], "parameters": step["parameters"], "macs_per_cell_forward": step["macs_per_cell"],
           "flops_per_cell_training_step": flops_per_cell,
           "h100_estimate": {"peak_tflops": H100_PEAK_TFLOPS, "assumed_fraction_of_bf16_dense_peak": H100_ASSUMED_FRACTION,
                             "assumed_sustained_tflops": round(sustained / 1e12, 1),
                             "cells_per_s_estimate": round(gpu_rate),
                             "break_even_tflops_for_one_reader": round(read_rate * flops_per_cell / 1e12, 2),
                             "readers_per_gpu_to_feed_it": readers},
           "epoch": {"1_cpu_process_measured": epoch(1, 1, 1 / step["cpu_s_per_cell"]),
                     "1_h100_1_reader_estimate": epoch(1, 1, gpu_rate),
                     f"1_h100_{readers}_readers_estimate": epoch(1, readers, gpu_rate),
                     "8_h100_1_reader_each_estimate": epoch(n_gpus, 1, gpu_rate),
                     f"8_h100_{readers}_readers_each_estimate": epoch(n_gpus, readers, gpu_rate)}}
    if memory and _phase(memory[-1], "codes_and_means", "seconds") is not None:
        per_cell = _phase(memory[-1], "codes_and_means", "seconds") / memory[-1]["cells"]
        out["measured"]["codes_and_means_s_per_cell_cpu"] = per_cell
        out["codes_and_means_passes_hours_at_100M_cpu"] = round(per_cell * cells / 3600, 2)
        out["codes_and_means_passes_s_at_100M_read_bound"] = round(cells / read_rate, 1)   # one sequential pass
    if model.get("peak"):
        fixed, slope = model["peak"]["fixed_mb"], model["peak"]["mb_per_million_cells"]
        millions = cells / 1e6
        out["memory_per_process_mb"] = {
            "measured_line_at_100M": round(fixed + slope * millions),
            **{f"{term}_at_100M": round(model[term]["mb_per_million_cells"] * millions)
               for term in ("obs", "labels", "codes_and_ids") if term in model},
            "codes_float32_at_100M_n_latent_10": 10 * 4 * cells // 2**20,
            "codes_float32_at_100M_n_latent_100": 100 * 4 * cells // 2**20}
    return out


def _vae_step_seconds(batch: int = 512, threads: int = 1) -> dict:
    """Seconds per cell of one VAE training step (scGen shape 800x2, latent 100) on this CPU; MACs from the layers."""
    import torch

    from virtualcell.nn.vae_module import VAEModule

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    vae = VAEModule(GENES, 100, 800, 2, 0.0, "gaussian", "leaky_relu")
    linears = [m for m in vae.modules() if isinstance(m, torch.nn.Linear)]
    macs = sum(m.in_features * m.out_features for m in linears)
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
    x = torch.rand(batch, GENES)
    for i in range(11):
        if i == 1:
            tick = time.perf_counter()
        loss = vae.losses(x, 5e-5)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {"cpu_s_per_cell": (time.perf_counter() - tick) / 10 / batch, "batch": batch, "macs_per_cell": macs,
            "parameters": sum(p.numel() for p in vae.parameters()),
            "vae": "linear layers " + ", ".join(f"{m.in_features}x{m.out_features}" for m in linears) + " (gaussian)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("section", choices=["loader", "memory", "ddp", "kang", "plan"])
    parser.add_argument("--cells", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch / OpenMP threads of the measured process")
    parser.add_argument("--repeats", type=int, default=1, help="memory: fresh processes per size (the median is kept)")
    parser.add_argument("--units", default="CD4T,B", help="kang: cell types held out, one at a time")
    parser.add_argument("--seeds", default="0,1,2", help="kang: seeds of each fit")
    args = parser.parse_args()
    if args.section == "loader":
        save("loader", bench_loader(args.cells))
    elif args.section == "memory":
        save(f"memory_{args.cells}", repeated_memory(args.cells, args.epochs, args.threads, args.repeats))
    elif args.section == "ddp":
        save("ddp", bench_ddp(args.cells))
    elif args.section == "kang":
        save("kang", bench_kang(max(args.epochs, 1), tuple(args.units.split(",")),
                                tuple(int(s) for s in args.seeds.split(",")), args.threads))
    else:
        save("plan", bench_plan(args.threads))


if __name__ == "__main__":
    main()
