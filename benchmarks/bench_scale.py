"""Training at atlas scale (issue 23): loader throughput, memory of a fit from disk, DDP, Kang, Tahoe plan.

Each section is one short run; results go to benchmarks/results/scale/
and simulated stores to /tmp (never the repository):

    python benchmarks/bench_scale.py loader  --cells 200000        # cells/s: ours, annbatch, anndata backed
    python benchmarks/bench_scale.py memory  --cells 200000        # peak RSS of VAE + latent arithmetic from disk
    python benchmarks/bench_scale.py ddp     --cells 20000         # 1 vs 2 gloo processes: val loss, wall-clock
    python benchmarks/bench_scale.py kang                          # Kang valid CD4T OOS: disk vs memory
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


def simulated_store(n_cells: int, folder: Path = Path("/tmp/vc_scale")) -> Path:
    """Sparse counts n_cells x 2,000 (5% non-zero, CSR h5ad, written in chunks), 2 conditions x 4 cell types."""
    import anndata as ad
    import h5py
    import pandas as pd

    path = folder / f"sim_{n_cells}.h5ad"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = rng.gamma(0.6, 2.0, size=(4, GENES)) + 0.05
    effect = np.where(rng.random(GENES) < 0.1, rng.normal(0, 1.0, GENES), 0.0)
    condition = np.where(rng.random(n_cells) < 0.5, "control", "stimulated")
    cell_type = rng.integers(0, 4, n_cells)
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


def bench_memory(n_cells: int, epochs: int) -> dict:
    """Peak RSS of PerturbationPipeline(vae, latent-arithmetic).fit(path) in a fresh process."""
    path = simulated_store(n_cells)
    code = f"""
import resource, time, json
import virtualcell as vc
pipe = vc.PerturbationPipeline(encoder={{"name": "vae", "n_hidden": 128, "n_latent": 10, "max_epochs": {epochs},
                                         "batch_size": 512, "validation_fraction": 0.02}}, preprocess="log1p")
tick = time.perf_counter()
pipe.fit({str(path)!r}, context_key="cell_type", progress=False)
rec = pipe.encoder.history.record()
print(json.dumps({{"seconds": round(time.perf_counter() - tick, 1), "train_cells_per_s": rec["cells_per_s"],
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "VIRTUALCELL_PROGRESS": "0"})
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return {"cells": n_cells, "genes": GENES, "epochs": epochs, "file_mb": round(path.stat().st_size / 2**20),
            "vae": "n_hidden 128, n_latent 10, batch 512", **json.loads(done.stdout.strip().splitlines()[-1])}


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


def bench_kang(max_epochs: int) -> dict:
    """CD4T stimulated held out of Kang valid: VAE + latent arithmetic in memory vs from the h5ad (same seed)."""
    import anndata as ad

    import virtualcell as vc
    from virtualcell.metrics.perturbation import pearson_delta, r2_mean

    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "kang_pbmc_scgen_valid.h5ad"
    adata = ad.read_h5ad(path)
    held = (adata.obs["cell_type"] == "CD4T") & (adata.obs["condition"] == "stimulated")
    train = adata[~held.to_numpy()].copy()
    train_path = Path("/tmp/vc_scale/kang_train.h5ad")
    train_path.parent.mkdir(parents=True, exist_ok=True)
    train.write_h5ad(train_path)
    ctrl = adata[((adata.obs["cell_type"] == "CD4T") & (adata.obs["condition"] == "control")).to_numpy()].copy()
    stim = np.asarray(adata[held.to_numpy()].X.toarray())
    out: dict = {"split": "Kang valid, CD4T stimulated held out", "max_epochs": max_epochs}
    for label, data, disk in (("memory", train, None), ("disk_exact", str(train_path), {"exact": True}),
                              ("disk_blocks", str(train_path), {"block_size": 64})):
        pipe = vc.PerturbationPipeline(encoder={"name": "vae", "max_epochs": max_epochs})
        tick = time.perf_counter()
        pipe.fit(data, context_key="cell_type", seed=0, progress=False, disk=disk)
        pred = np.asarray(pipe.predict(ctrl, target="stimulated").X)
        out[label] = {"r2": round(r2_mean(pred, stim), 4),
                      "pearson_delta": round(pearson_delta(pred, stim, ctrl.X.toarray()), 4),
                      "seconds": round(time.perf_counter() - tick, 1)}
    return out


def bench_plan() -> dict:
    """Tahoe-100M (100M cells, 2,000 HVGs) from the measured per-cell costs (loader, memory, VAE step)."""
    loader = json.loads((RESULTS / "loader.json").read_text())
    memory = {p.stem: json.loads(p.read_text()) for p in RESULTS.glob("memory_*.json")}
    step = _vae_step_seconds()
    read_per_cell = 1 / loader["virtualcell_h5ad_block64_cells_per_s"]
    cells = 100_000_000
    largest = max(memory.values(), key=lambda m: m["cells"]) if memory else {}
    out = {"cells": cells, "genes": GENES, "measured_read_s_per_cell": read_per_cell,
           "measured_cpu_vae_step_s_per_cell": step["cpu"], "vae": step["vae"],
           "epoch_hours_1_process_cpu_read_bound": round(cells * read_per_cell / 3600, 2),
           "epoch_hours_1_process_cpu_compute_bound": round(cells * step["cpu"] / 3600, 2),
           "peak_rss_mb_per_process_measured": largest.get("peak_rss_mb")}
    return out


def _vae_step_seconds(batch: int = 512) -> dict:
    """Seconds per cell of one VAE training step (scGen shape 800x2, latent 100) on this CPU."""
    import torch

    from virtualcell.nn.vae_module import VAEModule

    vae = VAEModule(GENES, 100, 800, 2, 0.0, "gaussian", "leaky_relu")
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
    x = torch.rand(batch, GENES)
    for i in range(6):
        if i == 1:
            tick = time.perf_counter()
        loss = vae.losses(x, 5e-5)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {"cpu": (time.perf_counter() - tick) / 5 / batch, "vae": "2000 -> 800 -> 800 -> 100, batch 512"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("section", choices=["loader", "memory", "ddp", "kang", "plan"])
    parser.add_argument("--cells", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    if args.section == "loader":
        save("loader", bench_loader(args.cells))
    elif args.section == "memory":
        save(f"memory_{args.cells}", bench_memory(args.cells, args.epochs))
    elif args.section == "ddp":
        save("ddp", bench_ddp(args.cells))
    elif args.section == "kang":
        save("kang", bench_kang(max(args.epochs, 1)))
    else:
        save("plan", bench_plan())


if __name__ == "__main__":
    main()
