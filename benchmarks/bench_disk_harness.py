"""``benchmark`` from disk against the same benchmark in memory, on real data (issue 23, item 1).

Each run is a fresh process (peak RSS = its VmHWM); results go to benchmarks/results/scale/harness_<name>.json,
rendered into RESULTS.md by benchmarks/report_scale.py:

    .venv/bin/python benchmarks/bench_disk_harness.py kang-full papalexi-pert     # both, ~10 min on 2 cores
    .venv/bin/python benchmarks/bench_disk_harness.py --atlas 200000 1000000      # from disk only, ~15 min

Method: pca + latent-arithmetic (defaults) beside the mean-shift and control baselines (and mean-perturbation for
PERT), seed 0, 1 torch thread. In memory: ``run_benchmark(path)`` reads the file and preprocesses it whole. From
disk: ``run_benchmark(path, from_disk=True)``: the recipe written once as a streamed CSR copy, every method fitted
from disk on its training cells, only each unit's cells read. Reported per method: the largest |difference| of the
gene-space metrics' means (R², pearson_delta, std ratio: the fitted models' predictions), the largest |difference| of
the distribution ratios (energy distance, MMD: in memory a seeded randomised PCA of the cells, from disk the same SVD
from the streamed covariance) on units with a clear effect (E(C, S) > 0.1: the ratios divide by it, so on null units any difference is amplified),
and the seconds and peak RSS of each run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

RESULTS = Path(__file__).parent / "results" / "scale"
DATA = Path(os.environ.get("VC_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
#: name -> run_benchmark arguments (the settings of benchmarks/bench_fidelity.py for the same data)
RUNS = {
    "kang-full": {"data": "kang_ifnb_full.h5ad", "protocol": "oos", "context_key": "cell_type_coarse",
                  "preprocess": "kang-full", "exclude_contexts": ["Megakaryocyte", "Erythrocyte"]},
    "papalexi-pert": {"data": "papalexi2021_crispr_thp1.h5ad", "protocol": "pert", "preprocess": "log1p"},
}
#: metrics computed in gene space (the PCA plays no part) and in the 50-PC space of the distribution metrics
GENE_SPACE = ("r2_mean_all", "r2_mean_top100", "pearson_delta", "std_ratio_top100")
DISTRIBUTION = ("edistance_ratio", "mmd_ratio")
#: units compared on the distribution ratios: a clear effect, E(C, S) above this (the ratios divide by it)
CLEAR_EFFECT = 0.1

_CHILD = """
import json, sys, time, torch
torch.set_num_threads(1)
from virtualcell.evaluate import run_benchmark
args = json.loads(sys.argv[1])
start = time.perf_counter()
report = run_benchmark(progress=False, plots=False, **args)
seconds = time.perf_counter() - start
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
print(json.dumps({"seconds": round(seconds, 1), "peak_rss_mb": round(peak, 1), "means": report["means"],
                  "results": report["results"],
                  "contexts": report["contexts"], "n_cells": report["dataset"]["n_cells"],
                  "n_genes": report["dataset"]["n_genes"]}))
"""


def _child(args: dict, what: str) -> dict:
    """``run_benchmark(**args)`` in a fresh process (1 thread): its means, results, seconds and peak RSS."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VIRTUALCELL_PROGRESS": "0", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_one(name: str, from_disk: bool) -> dict:
    """One benchmark of RUNS in a fresh process, in memory or from disk."""
    spec = dict(RUNS[name])
    args = {**spec, "data": str(DATA / spec.pop("data")), "from_disk": from_disk,
            "out": f"/tmp/vc_harness/{name}-{'disk' if from_disk else 'memory'}", "overwrite": True}
    return _child(args, f"{name} ({'disk' if from_disk else 'memory'})")


def compare(memory: dict, disk: dict) -> dict:
    """Per method: the largest |disk - memory| of the gene-space metrics' means, and of the distribution ratios
    over the units with a clear effect (E(C, S) > CLEAR_EFFECT in memory), with which metric and unit."""
    out = {}
    for label, means in memory["means"].items():
        gene = {m: abs(disk["means"][label][m] - means[m]) for m in GENE_SPACE
                if means.get(m) is not None and disk["means"][label].get(m) is not None}
        clear = [u for u, r in memory["results"][label].items()
                 if r.get("edistance_control", 0.0) > CLEAR_EFFECT]
        spread = {(m, u): abs(disk["results"][label][u][m] - memory["results"][label][u][m])
                  for u in clear for m in DISTRIBUTION if memory["results"][label][u].get(m) is not None}
        worst = max(spread, key=spread.get) if spread else None
        out[label] = {"gene_space_max_abs_diff": round(max(gene.values()), 6),
                      "gene_space_metric": max(gene, key=gene.get),
                      "distribution_max_abs_diff": round(spread[worst], 6) if worst else None,
                      "distribution_metric_unit": list(worst) if worst else None, "clear_units": len(clear)}
    return out


#: cells of a simulated atlas per cell type: the held-out units stay this size whatever the atlas's (a unit's truth,
#: its predictions and its Wilcoxon test are held in memory, in memory and from disk alike)
CELLS_PER_TYPE = 5000


def run_atlas(n_cells: int) -> dict:
    """The OOS benchmark from disk on bench_scale.py's simulated counts store of ``n_cells`` x 2,000 genes and
    ``n_cells / CELLS_PER_TYPE`` cell types (``log1p`` recipe by a streamed copy; units type0 and type1 held out
    in turn): seconds and peak RSS."""
    from bench_scale import GENES, simulated_store

    store = simulated_store(n_cells, n_types=max(4, n_cells // CELLS_PER_TYPE))
    args = {"data": str(store), "protocol": "oos", "context_key": "cell_type", "preprocess": "log1p",
            "contexts": ["type0", "type1"], "from_disk": True, "out": f"/tmp/vc_harness/atlas-{n_cells}",
            "overwrite": True}
    run = _child(args, f"atlas {n_cells}")
    return {"name": f"atlas_{n_cells}", "cells": n_cells, "genes": GENES, "units": len(run["contexts"]),
            "cell_types": max(4, n_cells // CELLS_PER_TYPE),
            "command": f"python benchmarks/bench_disk_harness.py --atlas {n_cells}", "threads": 1,
            "settings": {k: v for k, v in args.items() if k not in ("data", "out", "overwrite")},
            "seconds": run["seconds"], "peak_rss_mb": run["peak_rss_mb"],
            "dense_x_in_memory_mb": round(n_cells * GENES * 4 / 2**20), "means": run["means"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"real-data runs: {', '.join(sorted(RUNS))}")
    parser.add_argument("--atlas", nargs="*", type=int, default=[], metavar="CELLS",
                        help="benchmark from disk on simulated stores of these sizes (memory and time only)")
    options = parser.parse_args()
    names = options.names
    unknown = sorted(set(names) - set(RUNS))
    if unknown:
        parser.error(f"unknown run(s) {unknown}; choose from {sorted(RUNS)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    for n_cells in options.atlas:
        result = run_atlas(n_cells)
        (RESULTS / f"harness_atlas_{n_cells}.json").write_text(json.dumps(result, indent=2))
        print(f"atlas {n_cells}: {result['seconds']} s, peak RSS {result['peak_rss_mb']} MB "
              f"(X dense in memory alone: {result['dense_x_in_memory_mb']} MB)")
    for name in names:
        memory, disk = run_one(name, False), run_one(name, True)
        result = {"name": name, "settings": RUNS[name], "method": "pca + latent-arithmetic (defaults), seed 0",
                  "command": f"python benchmarks/bench_disk_harness.py {name}", "threads": 1,
                  "n_cells": memory["n_cells"], "n_genes": memory["n_genes"], "units": len(memory["contexts"]),
                  "memory": {k: memory[k] for k in ("seconds", "peak_rss_mb")},
                  "disk": {k: disk[k] for k in ("seconds", "peak_rss_mb")},
                  "differences": compare(memory, disk), "means_memory": memory["means"], "means_disk": disk["means"]}
        (RESULTS / f"harness_{name}.json").write_text(json.dumps(result, indent=2))
        gene = max(v["gene_space_max_abs_diff"] for v in result["differences"].values())
        spread = max((v["distribution_max_abs_diff"] or 0.0) for v in result["differences"].values())
        print(f"{name}: memory {memory['seconds']} s / {memory['peak_rss_mb']} MB, disk {disk['seconds']} s / "
              f"{disk['peak_rss_mb']} MB; largest |diff| gene-space mean {gene:.2e}, distribution ratio on a "
              f"clear-effect unit {spread:.2e}")


if __name__ == "__main__":
    main()
