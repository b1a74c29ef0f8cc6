"""Atlas-scale store benchmarks (issue #16): streaming/Dask embedding, exact and approximate kNN, filters.

    flock /tmp/vc-bench.lock nice python benchmarks/bench_store.py embed --sizes 100000 300000 1000000 --dask-sizes 100000 300000
    flock /tmp/vc-bench.lock nice python benchmarks/bench_store.py search --cells 1000000 --compare-cells 300000

``search`` runs ``knn`` on the full atlas, ``ann`` with hnswlib, usearch and faiss on the
``--compare-cells`` atlas (file ``ann-300k.json``), then ``ann`` with the fastest of them at recall
0.99 on the full atlas (``ann.json``).

Data (simulated, fixed a priori, seed 0): sparse raw counts of 2,000 genes from 20 cell types
(Poisson around a per-type profile, ~6% non-zero; 200,000 distinct states, thinned copies), written chunk by chunk to ``.h5ad`` under
``--work`` (outside the repository). ``embed``: a 64-component PCA pipeline (``log1p`` recipe) fitted
on 20,000 cells, then every size embedded in its own subprocess (peak RSS of that process from
``getrusage``; Dask: the largest worker's and the client's), single process and Dask with 2 worker
processes. ``knn``/``ann``: the 1M-cell embedding written by ``embed``, 1,000 queries = 1,000 fresh
simulated cells of the same types through the same pipeline. Every timing uses 2 threads. Each run
writes ``benchmarks/results/store/<section>.json``; ``benchmarks/report_store.py`` renders them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "store"
N_GENES, N_TYPES, THREADS, POOL = 2000, 20, 2, 200000


def machine() -> dict:
    import torch

    return {"cpu_count": os.cpu_count(), "threads": THREADS, "platform": platform.platform(),
            "torch": torch.__version__, "load_average_at_start": os.getloadavg()[0]}


def simulate(n_cells: int, seed: int, chunk: int = 20000):
    """Yield (counts csr [<=chunk, 2000], cell types) chunks; the same seed gives the same cells.

    A pool of 200,000 Poisson cells (20 types around log-normal profiles, per-cell size factors) is
    drawn once; each cell of the atlas is a pool cell whose counts are binomially thinned (p = 0.9),
    so cells are distinct (no exact ties for kNN) and generation is fast enough for 10^6 cells (at
    10^6, about 5 thinned copies of each pool cell).
    """
    import scipy.sparse as sp

    profiles = np.random.default_rng(12345).lognormal(mean=-3.6, sigma=1.3, size=(N_TYPES, N_GENES))
    rng = np.random.default_rng(seed)
    pool_types = rng.integers(0, N_TYPES, size=POOL)
    pool = sp.vstack([sp.csr_matrix(rng.poisson(profiles[pool_types[i:i + 20000]] * rng.lognormal(0, 0.3, size=(
        len(pool_types[i:i + 20000]), 1))).astype(np.float32)) for i in range(0, POOL, 20000)]).tocsr()
    for start in range(0, n_cells, chunk):
        n = min(chunk, n_cells - start)
        pick = rng.integers(0, POOL, size=n)
        counts = pool[pick]
        counts.data = rng.binomial(counts.data.astype(np.int64), 0.9).astype(np.float32)
        counts.eliminate_zeros()
        yield counts, pool_types[pick]


def write_atlas(path: Path, n_cells: int, seed: int) -> None:
    """A backed-writable .h5ad of ``n_cells`` simulated cells, written chunk by chunk."""
    import anndata as ad
    import h5py
    import pandas as pd
    from anndata.io import sparse_dataset, write_elem

    if path.exists():
        return
    tmp = path.with_suffix(".partial")
    types_all = []
    with h5py.File(tmp, "w") as f:
        for i, (x, types) in enumerate(simulate(n_cells, seed)):
            if i == 0:
                write_elem(f, "X", x)
            else:
                sparse_dataset(f["X"]).append(x)
            types_all.append(types)
        types = np.concatenate(types_all)
        obs = pd.DataFrame({"cell_type": pd.Categorical([f"type_{t}" for t in types]),
                            "batch": pd.Categorical([f"batch_{i % 8}" for i in range(n_cells)]),
                            "n_counts_bin": np.arange(n_cells) % 10},
                           index=[f"cell{i}" for i in range(n_cells)])
        write_elem(f, "obs", obs)
        write_elem(f, "var", pd.DataFrame(index=[f"gene{g}" for g in range(N_GENES)]))
        for name in ("obsm", "varm", "layers", "obsp", "varp", "uns"):
            write_elem(f, name, {})
        f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
    os.replace(tmp, path)
    ad.read_h5ad(path, backed="r").file.close()  # it opens as an AnnData


def fit_pipeline(work: Path):
    """A 64-component PCA pipeline (log1p recipe) fitted on 20,000 simulated cells (seed 1)."""
    import anndata as ad
    import pandas as pd

    import virtualcell as vc

    folder = work / "pca64"
    if folder.exists():
        return folder
    x, types = next(simulate(20000, seed=1, chunk=20000))
    adata = ad.AnnData(X=x, obs=pd.DataFrame({"cell_type": [f"type_{t}" for t in types],
                                              "condition": "control"}, index=[f"fit{i}" for i in range(20000)]),
                       var=pd.DataFrame(index=[f"gene{g}" for g in range(N_GENES)]))
    adata.obs["condition"] = np.where(np.arange(20000) % 2 == 0, "control", "stim")
    pipeline = vc.PerturbationPipeline(encoder={"name": "pca", "n_components": 64}, manipulator="mean-shift",
                                       preprocess="log1p")
    pipeline.fit(adata, context_key="cell_type", seed=0)
    pipeline.save(folder)
    return folder


def peak_rss_mib() -> float:
    """This process's peak resident memory (``VmHWM``; unlike ``ru_maxrss`` it is not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def embed_one(args) -> None:
    """Child process: embed one atlas (single process or Dask) and print cells/s and peak RSS as JSON."""
    import torch

    torch.set_num_threads(THREADS if args.mode == "single" else 1)
    import virtualcell as vc
    from virtualcell.pipelines.embed import embed

    pipeline = vc.PerturbationPipeline.load(args.pipeline)
    client = None
    if args.mode == "dask":
        from dask.distributed import Client, LocalCluster

        client = Client(LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                     silence_logs=40))
    started = time.perf_counter()
    state = embed(args.data, pipeline, store=args.store, key_added="pca", overwrite=True, client=client,
                  chunk_rows=8192, progress=False)
    seconds = time.perf_counter() - started
    out = {"mode": args.mode, "n_cells": state.n_rows, "seconds": seconds, "cells_per_s": state.n_rows / seconds,
           "client_peak_rss_mib": peak_rss_mib()}
    if client is not None:
        peaks = client.run(peak_rss_mib)
        out["worker_peak_rss_mib"] = max(peaks.values())
        client.close()
    print(json.dumps(out))


def section_embed(args) -> dict:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    pipeline = fit_pipeline(work)
    rows = []
    for n in args.sizes:
        data = work / f"atlas_{n}.h5ad"
        started = time.perf_counter()
        write_atlas(data, n, seed=0)
        print(f"{n} cells: atlas ready ({time.perf_counter() - started:.0f} s)", flush=True)
        for mode in args.modes:
            if mode == "dask" and args.dask_sizes is not None and n not in args.dask_sizes:
                continue
            store = work / f"store_{n}.zarr" if mode == "single" else work / f"store_{n}_dask.zarr"
            result = subprocess.run([sys.executable, __file__, "_embed_one", "--data", str(data), "--pipeline",
                                     str(pipeline), "--store", str(store), "--mode", mode],
                                    capture_output=True, text=True, check=True)
            row = json.loads(result.stdout.strip().splitlines()[-1]) | {"file_mib": data.stat().st_size / 2**20}
            print(row, flush=True)
            rows.append(row)
    return {"rows": rows, "chunk_rows": 8192, "n_genes": N_GENES, "n_latent": 64, "rss_measure": "VmHWM",
            "pool": POOL}


def _queries(work: Path, n: int = 1000):
    import anndata as ad
    import pandas as pd

    import virtualcell as vc
    from virtualcell.pipelines.embed import embed

    x, types = next(simulate(n, seed=99, chunk=n))
    adata = ad.AnnData(X=x, obs=pd.DataFrame(index=[f"q{i}" for i in range(n)]),
                       var=pd.DataFrame(index=[f"gene{g}" for g in range(N_GENES)]))
    return embed(adata, vc.PerturbationPipeline.load(work / "pca64"), copy=True).obsm["X_virtualcell"]


def _store(work: Path, n: int):
    from virtualcell.store import EmbeddingStore

    path = work / f"store_{n}.zarr"
    if not path.exists():
        raise SystemExit(f"{path} is missing: run `bench_store.py embed --sizes {n}` first.")
    return EmbeddingStore(path)


def matmul_peak(repeats: int = 5) -> float:
    """Best float32 GEMM GFLOP/s of torch on 4096 x 4096 at the benchmark's threads."""
    import torch

    a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * 4096 ** 3 / best / 1e9


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _products(values: np.ndarray, query: np.ndarray, rows: int = 32768, batch: int = 1024) -> None:
    """Only the distance products of the exact search, same blocks, no selection: the ceiling of its design."""
    import torch

    q, x = torch.from_numpy(query), torch.from_numpy(values)
    for start in range(0, len(x), rows):
        block = x[start:start + rows]
        norms = (block * block).sum(dim=1)[None, :]
        for first in range(0, len(q), batch):
            torch.addmm(norms, q[first:first + batch], block.T, alpha=-2.0)


def section_knn(args) -> dict:
    import faiss
    from sklearn.neighbors import NearestNeighbors

    work = Path(args.work)
    store = _store(work, args.cells)
    query = _queries(work)
    k, m = 10, len(query)
    peak_before = matmul_peak()
    ours = [_timed(lambda: store.nearest("pca", query, k=k)) for _ in range(args.repeats)]
    rows_ours, _ = store.nearest("pca", query, k=k)
    values = store.values("pca")
    n, d = values.shape
    faiss.omp_set_num_threads(THREADS)
    flat = faiss.IndexFlatL2(d)
    flat.add(values)
    faiss_t = [_timed(lambda: flat.search(query, k)) for _ in range(args.repeats)]
    _, rows_faiss = flat.search(query, k)
    sk = NearestNeighbors(n_neighbors=k, algorithm="brute", n_jobs=THREADS).fit(values)
    sklearn_t = [_timed(lambda: sk.kneighbors(query)) for _ in range(1)]
    rows_sk = sk.kneighbors(query)[1]
    peak = max(peak_before, matmul_peak())
    flops = 2.0 * m * n * d
    gemm_only = min(_timed(lambda: _products(values, query)) for _ in range(args.repeats))
    agree = lambda a, b: float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a.tolist(), b.tolist())]))
    np.save(work / f"truth_{args.cells}.npy", rows_ours)
    filt = 'cell_type in ["type_3", "type_7"] & batch != "batch_0"'
    select_t = _timed(lambda: store.select("pca", filt))
    selected = store.select("pca", filt)
    filtered_t = _timed(lambda: store.nearest("pca", query[:100], k=k, where=filt))
    obs_bytes = sum(p.stat().st_size for p in (Path(store.path) / "pca" / "obs").rglob("*") if p.is_file())
    return {"n_cells": n, "dim": d, "n_queries": m, "k": k, "matmul_peak_gflops": peak, "obs_bytes_per_cell": obs_bytes / n,
            "pool": POOL,
            "seconds": {"virtualcell (store, streamed)": min(ours), "faiss IndexFlatL2 (in memory)": min(faiss_t),
                        "scikit-learn brute (in memory)": min(sklearn_t)},
            "gemm_only_seconds": gemm_only, "gemm_only_fraction_of_peak": flops / gemm_only / 1e9 / peak,
            "gflops_ours": flops / min(ours) / 1e9, "fraction_of_peak": flops / min(ours) / 1e9 / peak,
            "agreement_with_faiss": agree(rows_ours, rows_faiss), "agreement_with_sklearn": agree(rows_ours, rows_sk),
            "filter": {"expression": filt, "n_selected": int(len(selected)), "select_seconds": select_t,
                       "filtered_knn_100_queries_seconds": filtered_t}}


def section_ann(args) -> dict:
    from virtualcell.store.ann import EF_LADDER

    work = Path(args.work)
    store = _store(work, args.cells)
    query = _queries(work)
    truth_path = work / f"truth_{args.cells}.npy"
    truth = np.load(truth_path) if truth_path.exists() else store.nearest("pca", query, k=10)[0]
    rows = []
    for library in args.libraries:
        index = store.build_index("pca", library=library, k=10, n_check=500, threads=THREADS, progress=False,
                                  m=args.m, ef_construction=args.ef_construction)
        build = index.info["build_seconds"]
        for ef in EF_LADDER:
            index.set_ef(max(ef, 10))
            seconds = _timed(lambda: index.search(query, 10, threads=THREADS))
            found, _ = index.search(query, 10, threads=THREADS)
            recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found.tolist(), truth.tolist())]))
            rows.append({"library": library, "ef": ef, "recall_at_10": recall, "seconds_1000_queries": seconds,
                         "queries_per_s": len(query) / seconds, "build_seconds": build,
                         "stored_recall": index.info["recall_at_k"], "stored_ef": index.info["search_ef"]})
            print(rows[-1], flush=True)
            if recall >= 0.995:
                break
    return {"n_cells": args.cells, "m": args.m, "ef_construction": args.ef_construction, "rows": rows, "pool": POOL}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("section", choices=["embed", "knn", "ann", "search", "_embed_one"])
    parser.add_argument("--work", default="/tmp/vc-store-bench")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100000, 300000, 1000000])
    parser.add_argument("--modes", nargs="+", default=["single", "dask"])
    parser.add_argument("--dask-sizes", type=int, nargs="+", default=None, help="sizes also run on Dask (default: all)")
    parser.add_argument("--compare-cells", type=int, default=300000, help="search: atlas size of the 3-library comparison")
    parser.add_argument("--cells", type=int, default=1000000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--libraries", nargs="+", default=["hnswlib", "usearch", "faiss"])
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=100)
    parser.add_argument("--tag", default="", help="suffix of the result file name")
    parser.add_argument("--data"), parser.add_argument("--pipeline"), parser.add_argument("--store")
    parser.add_argument("--mode", default="single")
    args = parser.parse_args()
    if args.section == "_embed_one":
        return embed_one(args)
    import torch

    torch.set_num_threads(THREADS)
    if args.section == "search":  # knn, then the 3-library comparison, then the chosen library at full size
        run_section("knn", section_knn, args, args.tag)
        compare = argparse.Namespace(**{**vars(args), "cells": args.compare_cells})
        chosen = run_section("ann", section_ann, compare, f"{args.compare_cells // 1000}k")
        best = [r for r in chosen["rows"] if r["recall_at_10"] >= 0.99]
        library = min(best, key=lambda r: r["seconds_1000_queries"])["library"] if best else "hnswlib"
        run_section("ann", section_ann, argparse.Namespace(**{**vars(args), "libraries": [library]}), args.tag)
        return
    run_section(args.section, {"embed": section_embed, "knn": section_knn, "ann": section_ann}[args.section],
                args, args.tag)


def run_section(name: str, function, args, tag: str) -> dict:
    """Run one section and write ``results/store/<name>[-tag].json`` (with the command and the machine)."""
    started = time.perf_counter()
    result = function(args)
    result |= {"command": "python benchmarks/bench_store.py " + " ".join(sys.argv[1:]), "machine": machine(),
               "total_seconds": round(time.perf_counter() - started, 1)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}{('-' + tag) if tag else ''}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}", flush=True)
    return result


if __name__ == "__main__":
    main()
