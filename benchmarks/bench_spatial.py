"""Spatial domains: the graph encoder beside PCA and neighbour-averaged expression, and its scaling.

Protocol (fixed before any real label was looked at):

1. ``select``: the graph encoder's objective (reconstruction vs deep graph infomax) and GNN layer
   (GraphSAGE vs GCN) are chosen by ARI against the *simulated* domains of three simulated slides
   (``virtualcell.data.simulate_spatial``, seeds 0-2); the winner becomes ``GraphEncoder``'s default.
   Everything else is fixed a priori: k = 10 nearest neighbours, 2 layers, 64 hidden, 32 latent,
   300 steps of 512 seed cells, k-means with K = the number of annotated domains.
2. ``real``: with those defaults, unchanged, on the labelled slides: osmFISH (``Excluded`` cells and
   duplicated rows at identical coordinates dropped, raw counts -> normalize_total + log1p; 11
   regions) and seqFISH+ (z-scored, 9 domains). ARI / NMI against the annotation, seconds, for graph,
   PCA and neighbour-average, each over 3 seeds. The non-default objective is also scored, for
   transparency only. MERFISH (2 sections, no region labels): how well each representation predicts
   a cell's niche composition (shares of the 16 cell classes among its 30 nearest cells), a ridge
   regression fitted on one section and scored (R^2) on the other, both ways.
3. ``scale``: memory (peak RSS of a fresh process) and seconds of graph building, training and
   encoding against the number of cells on simulated slides.

``flock /tmp/vc-bench.lock nice python benchmarks/bench_spatial.py {select,real,scale}``; results go to
``benchmarks/results/spatial/<task>.json`` and ``benchmarks/report_spatial.py`` renders them.
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

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "benchmarks" / "results" / "spatial"


def _machine(threads: int) -> dict:
    import torch

    return {"cpu_count": os.cpu_count(), "torch_threads": threads, "python": platform.python_version(),
            "torch": torch.__version__, "platform": platform.platform()}


def _scores(truth, labels) -> dict:
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    return {"ari": round(float(adjusted_rand_score(truth, labels)), 4),
            "nmi": round(float(normalized_mutual_info_score(truth, labels)), 4)}


def _run(adata, method: str, n_domains: int, seed: int, encoder: dict | None = None, **kwargs) -> tuple[np.ndarray, float]:
    from virtualcell.pipelines.domains import spatial_domains

    started = time.perf_counter()
    out = spatial_domains(adata, method=method, n_domains=n_domains, seed=seed, encoder=encoder, copy=True,
                          progress=False, **kwargs)
    return out, time.perf_counter() - started


def select(args) -> dict:
    from virtualcell.data.simulate_spatial import simulate_spatial

    grid = [{"objective": o, "layer": l} for o in ("reconstruct", "dgi") for l in ("sage", "gcn")]
    slides = [dict(n_cells=3000, n_genes=40, n_domains=5, seed=s) for s in range(3)]
    rows = []
    for slide in slides:
        adata = simulate_spatial(**slide)
        for method in ("pca", "neighbour-average"):
            out, seconds = _run(adata, method, slide["n_domains"], 0)
            rows.append({"slide_seed": slide["seed"], "method": method, **_scores(adata.obs["true_domain"], out.obs["domain"]),
                         "seconds": round(seconds, 2)})
        for config in grid:
            out, seconds = _run(adata, "graph", slide["n_domains"], 0, encoder=config)
            rows.append({"slide_seed": slide["seed"], "method": "graph", **config,
                         **_scores(adata.obs["true_domain"], out.obs["domain"]), "seconds": round(seconds, 2)})
            print(rows[-1], flush=True)
    means = {}
    for config in grid:
        picked = [r["ari"] for r in rows if r.get("objective") == config["objective"] and r.get("layer") == config["layer"]]
        means[f"{config['objective']}/{config['layer']}"] = round(float(np.mean(picked)), 4)
    return {"task": "select", "slides": slides, "rows": rows, "mean_ari": means,
            "winner": max(means, key=means.get)}


def _osmfish():
    import anndata as ad
    import pandas as pd

    adata = ad.read_h5ad(DATA / "spatial_osmfish_sscortex.h5ad")
    adata = adata[adata.obs["Region"].astype(str) != "Excluded"]
    adata = adata[~pd.DataFrame(adata.obsm["spatial"]).duplicated().to_numpy()].copy()
    return adata, "Region", {}


def _seqfish():
    import anndata as ad

    return ad.read_h5ad(DATA / "spatial_seqfish_visualcortex_banksy.h5ad"), "domains", {}


def _niche_composition(adata, classes: str, section_key: str, k: int = 30) -> np.ndarray:
    from virtualcell.data.spatial import graph_of

    graph = graph_of(adata, section_key=section_key, n_neighbors=k)
    onehot = np.eye(adata.obs[classes].nunique(), dtype=np.float32)[adata.obs[classes].cat.codes.to_numpy()]
    return graph.neighbour_mean(onehot)


def _cross_section_r2(z: np.ndarray, target: np.ndarray, sections: np.ndarray) -> float:
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score

    scores = []
    for held in np.unique(sections):
        train, test = sections != held, sections == held
        mean, scale = z[train].mean(0), z[train].std(0) + 1e-6
        model = Ridge(alpha=1.0).fit((z[train] - mean) / scale, target[train])
        scores.append(r2_score(target[test], model.predict((z[test] - mean) / scale), multioutput="variance_weighted"))
    return round(float(np.mean(scores)), 4)


def real(args) -> dict:
    from virtualcell.representations.graph import GraphEncoder

    chosen = json.loads((OUT / "select.json").read_text())["winner"]    # run `select` first
    objective, layer = chosen.split("/")
    defaults = GraphEncoder().config
    if (defaults["objective"], defaults["layer"]) != (objective, layer):
        print(f"note: GraphEncoder's defaults ({defaults['objective']}/{defaults['layer']}) differ from the selected "
              f"{chosen}; using the selected one", flush=True)
    other = "dgi" if objective == "reconstruct" else "reconstruct"
    methods = [("graph", {"objective": objective, "layer": layer}), ("pca", None), ("neighbour-average", None),
               (f"graph:{other}", {"objective": other, "layer": layer})]
    rows = []
    for name, load in (("osmfish", _osmfish), ("seqfish", _seqfish)):
        adata, label, _ = load()
        n_domains = int(adata.obs[label].nunique())
        for method, encoder in methods:
            for seed in range(args.seeds):
                out, seconds = _run(adata, method.split(":")[0], n_domains, seed, encoder=encoder)
                rows.append({"dataset": name, "n_cells": int(adata.n_obs), "n_domains": n_domains, "method": method,
                             "seed": seed, **_scores(adata.obs[label].astype(str), out.obs["domain"]),
                             "seconds": round(seconds, 2)})
                print(rows[-1], flush=True)
    import anndata as ad

    merfish = ad.read_h5ad(DATA / "spatial_merfish_hypothalamus_banksy.h5ad")
    merfish.obs["Cell_class"] = merfish.obs["Cell_class"].astype("category")
    target = _niche_composition(merfish, "Cell_class", "sdimz")
    sections = merfish.obs["sdimz"].astype(str).to_numpy()
    niche = []
    for method, encoder in methods:
        out, seconds = _run(merfish, method.split(":")[0], 8, 0, encoder=encoder, section_key="sdimz")
        key = out.uns["domain"]["representation_key"]
        niche.append({"dataset": "merfish", "method": method, "niche_r2": _cross_section_r2(out.obsm[key], target, sections),
                      "seconds": round(seconds, 2)})
        print(niche[-1], flush=True)
    return {"task": "real", "selected": chosen, "rows": rows, "niche": niche,
            "encoder_defaults": dict(GraphEncoder().config) | {"objective": objective, "layer": layer}}


def _scale_child(n_cells: int, threads: int) -> dict:
    import torch

    from virtualcell.data.simulate_spatial import simulate_spatial
    from virtualcell.data.spatial import graph_of
    from virtualcell.representations.graph import GraphEncoder

    import torch_geometric.nn  # noqa: F401  (import time, 5-10 s here, is not the encoder's time)

    torch.set_num_threads(threads)
    timings = {}
    started = time.perf_counter()
    adata = simulate_spatial(n_cells, 50, n_domains=6, size=float(np.sqrt(n_cells) * 20), seed=0)
    timings["simulate_s"] = time.perf_counter() - started
    started = time.perf_counter()
    graph = graph_of(adata, n_neighbors=10)
    edge_index = graph.edge_index()
    timings["graph_s"] = time.perf_counter() - started
    x = torch.from_numpy(adata.X)
    del adata
    started = time.perf_counter()
    objective, layer = json.loads((OUT / "select.json").read_text())["winner"].split("/")
    encoder = GraphEncoder(objective=objective, layer=layer).fit(x, [f"g{i}" for i in range(x.shape[1])], edge_index=edge_index, progress=False)
    timings["fit_s"] = time.perf_counter() - started
    started = time.perf_counter()
    z = encoder.encode(x, edge_index)
    timings["encode_s"] = time.perf_counter() - started
    return {"n_cells": n_cells, "n_genes": int(x.shape[1]), "n_latent": int(z.shape[1]), "steps": encoder.config["max_steps"],
            "objective": objective, "layer": layer,
            **{k: round(v, 2) for k, v in timings.items()},
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
            "input_gb": round(x.numel() * 4 / 2**30, 3)}


def scale(args) -> dict:
    rows = []
    for n in args.cells:
        started = time.perf_counter()
        result = subprocess.run([sys.executable, __file__, "scale-child", str(n), "--threads", str(args.threads)],
                                capture_output=True, text=True, timeout=args.timeout)
        if result.returncode != 0:
            rows.append({"n_cells": n, "error": result.stderr.strip().splitlines()[-1:]})
        else:
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
        rows[-1]["wall_s"] = round(time.perf_counter() - started, 2)
        print(rows[-1], flush=True)
    return {"task": "scale", "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=["select", "real", "scale", "scale-child"])
    parser.add_argument("n", nargs="?", type=int, help="cells (scale-child only)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--cells", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--timeout", type=int, default=600)
    args = parser.parse_args()
    import torch

    import torch_geometric.nn  # noqa: F401  (imported before any timer starts)

    torch.set_num_threads(args.threads)
    os.environ.setdefault("VIRTUALCELL_PROGRESS", "0")
    if args.task == "scale-child":
        print(json.dumps(_scale_child(args.n, args.threads)))
        return
    started = time.perf_counter()
    result = {"select": select, "real": real, "scale": scale}[args.task](args)
    result |= {"command": "python benchmarks/bench_spatial.py " + " ".join(sys.argv[1:]),
               "machine": _machine(args.threads), "total_seconds": round(time.perf_counter() - started, 1)}
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{args.task}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
