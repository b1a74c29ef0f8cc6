"""Representation benchmarks of issue #13; every stage writes JSON to benchmarks/results/represent/.

    flock /tmp/vc-bench.lock nice python benchmarks/bench_represent.py throughput select represent
    flock /tmp/vc-bench.lock nice python benchmarks/bench_represent.py oos

Stages:
- ``throughput``: the transformer's pretraining throughput (cells/s over the training steps,
  excluding model construction) and peak memory on CPU, for binned values, the rank encoding (the
  default), and rank with bf16 autocast, 256 tokens, each in a fresh process on 1,024 Kang control cells (peak
  resident memory minus the resident memory just before ``fit``). ``throughput.json``.
- ``select``: the transformer's settings (``CANDIDATES``) chosen by cross-validation on the control
  cells alone (pretrain on them, label decoder on a stratified half, macro-F1 on the other half);
  ``select_controls.json``. The two stages below use the winner.
- ``represent``: ``virtualcell benchmark represent`` on kang_ifnb_full.h5ad, pca / vae / transformer
  side by side, at most 3,000 cells per condition (seeded) to fit 2 shared cores. ``kang_full.json``.
- ``oos``: ``virtualcell benchmark oos`` on the scGen Kang valid set with latent arithmetic on the
  transformer's representation and the mlp-decoder the pipeline trains for it (beside control and
  mean-shift, metrics v2). ``valid_oos_transformer.json`` (the VAE's run is the harness's valid-oos-vae.json).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "represent"
DATA = Path(os.environ.get("DATA", ROOT.parent / "shared" / "data"))
FULL, VALID = DATA / "kang_ifnb_full.h5ad", DATA / "kang_pbmc_scgen_valid.h5ad"
THREADS = int(os.environ.get("THREADS", "2"))
CONFIGS = {"binned-256": {"mode": "binned"}, "rank-256": {"mode": "rank"},
           "rank-256-bf16": {"mode": "rank", "mixed_precision": True}}


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(npy: str, config: str) -> None:
    """One measurement in a fresh process: prints a JSON line."""
    import numpy as np
    import torch
    import transformers.models.bert.modeling_bert  # noqa: F401  (library code is not the model's memory)

    from virtualcell.representations.transformer import TransformerEncoder

    torch.set_num_threads(THREADS)
    x = torch.from_numpy(np.load(npy))
    genes = [f"g{i}" for i in range(x.shape[1])]
    kwargs = {"max_epochs": 1, **json.loads(config)}
    before = _rss_mb()
    encoder = TransformerEncoder(**kwargs).fit(x, genes, seed=0, progress=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    encoder.encode(x)
    encode_seconds = time.perf_counter() - start
    print(json.dumps({"config": encoder.config_dict(), "n_cells": int(x.shape[0]), "n_genes": int(x.shape[1]),
                      "fit_seconds": encoder.training_summary["seconds"],
                      "cells_per_second": encoder.training_summary["cells_per_second"],
                      "encode_cells_per_second": round(x.shape[0] / encode_seconds, 1),
                      "rss_before_fit_mb": round(before, 1), "peak_rss_mb": round(peak, 1),
                      "peak_over_before_mb": round(peak - before, 1)}))


def throughput(n_cells: int = 1024) -> None:
    import anndata as ad
    import numpy as np

    from virtualcell.data.preprocess import Preprocessing
    from virtualcell.evaluate.report import machine_info, package_versions, write_json

    adata = ad.read_h5ad(FULL)
    recipe = Preprocessing.from_spec("kang-full").fit(adata)
    control = np.flatnonzero((adata.obs["condition"] == "control").to_numpy())
    rows = np.sort(np.random.default_rng(0).choice(control, n_cells, replace=False))
    x = recipe.transform(adata[rows])
    npy = Path("/tmp/f_represent_throughput.npy")
    np.save(npy, x)
    runs = {}
    for name, config in CONFIGS.items():
        out = subprocess.run([sys.executable, __file__, "_child", str(npy), json.dumps(config)], capture_output=True,
                             text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": str(THREADS)})
        runs[name] = json.loads(out.stdout.strip().splitlines()[-1])
        print(name, runs[name], flush=True)
    nonzero = (x > 0).sum(1)
    write_json(RESULTS / "throughput.json", {
        "command": f"python benchmarks/bench_represent.py throughput  (THREADS={THREADS})",
        "data": FULL.name, "n_cells": n_cells, "expressed_genes_per_cell": {
            "median": float(np.median(nonzero)), "p90": float(np.quantile(nonzero, 0.9))},
        "runs": runs, "machine": machine_info(), "packages": package_versions()})


#: transformer settings compared by ``select`` (cross-validation on control cells only)
#: (the recorded run of 2026-11-30 gave "binned-mean-3ep" as {}: binned and 3 epochs were the defaults then)
CANDIDATES = {"binned-mean-3ep": {"mode": "binned", "max_epochs": 3},
              "binned-mean-10ep": {"mode": "binned", "max_epochs": 10},
              "binned-cls-10ep": {"mode": "binned", "max_epochs": 10, "pooling": "cls"},
              "rank-mean-10ep": {"max_epochs": 10, "mode": "rank"}}


def select(max_cells: int = 3000) -> None:
    """Choose the transformer's settings on the control cells alone: pretrain on them, fit the label decoder
    on a stratified half, score macro-F1 on the other half. The stimulated cells are never read."""
    import anndata as ad
    import numpy as np
    import torch
    from sklearn.metrics import f1_score

    from virtualcell.data.preprocess import Preprocessing
    from virtualcell.evaluate.report import machine_info, write_json
    from virtualcell.pipelines.annotate import transfer_labels
    from virtualcell.representations.transformer import TransformerEncoder

    torch.set_num_threads(THREADS)
    adata = ad.read_h5ad(FULL)
    adata = adata[~adata.obs["cell_type_coarse"].isin(["Megakaryocyte", "Erythrocyte"])].copy()
    recipe = Preprocessing.from_spec("kang-full").fit(adata)
    control = np.flatnonzero((adata.obs["condition"] == "control").to_numpy())
    rows = np.sort(np.random.default_rng(0).choice(control, min(max_cells, control.size), replace=False))
    cells = adata[rows]
    x = torch.from_numpy(recipe.transform(cells))
    labels = cells.obs["cell_type_coarse"].astype(str).to_numpy()
    rng = np.random.default_rng(1)
    half = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        half[members[: len(members) // 2]] = True
    scores = {}
    for name, options in CANDIDATES.items():
        start = time.perf_counter()
        z = TransformerEncoder(**options).fit(x, recipe.genes, seed=0, progress=False).encode(x)
        _, probabilities = transfer_labels(z[torch.from_numpy(half)], labels[half].tolist(), z[torch.from_numpy(~half)])
        classes = np.array(sorted(set(labels[half])))
        predicted = classes[probabilities.argmax(1).numpy()]
        scores[name] = {"options": options, "macro_f1": float(f1_score(labels[~half], predicted, average="macro")),
                        "seconds": round(time.perf_counter() - start, 1)}
        print(name, scores[name], flush=True)
    winner = max(scores, key=lambda k: scores[k]["macro_f1"])
    write_json(RESULTS / "select_controls.json", {
        "command": f"python benchmarks/bench_represent.py select  (THREADS={THREADS})",
        "protocol": f"{len(labels)} control cells of {FULL.name} (seeded), kang-full preprocessing; each transformer "
                    "pretrained on all of them, label-decoder fitted on a stratified half, macro-F1 on the other half",
        "candidates": scores, "winner": winner, "machine": machine_info()})


def _chosen() -> list[str]:
    """``--encoder-option transformer.K=V`` for the settings ``select`` chose (none before it ran)."""
    chosen = RESULTS / "select_controls.json"
    if not chosen.exists():
        return []
    report = json.loads(chosen.read_text())
    options = report["candidates"][report["winner"]]["options"]
    return [a for k, v in options.items() for a in ("--encoder-option", f"transformer.{k}={json.dumps(v)}")]


def _cli(args: list[str]) -> None:
    print("virtualcell " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "virtualcell.cli", *args], check=True, cwd=ROOT)


def represent() -> None:
    _cli(["benchmark", "represent", "--data", str(FULL), "--out", str(RESULTS / "kang_full.json"), "--max-cells", "3000",
          *_chosen(), "--threads", str(THREADS), "--seed", "0", "--quiet", "--overwrite"])


def oos() -> None:
    out = Path("/tmp/f-oos-transformer")
    chosen = [a.replace("transformer.", "") for a in _chosen()]
    _cli(["benchmark", "oos", "--data", str(VALID), "--out", str(out), "--encoder", "transformer", *chosen,
          "--manipulator", "latent-arithmetic", "--seed", "0", "--threads", str(THREADS), "--no-plots", "--overwrite",
          "--quiet"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out / "results.json", RESULTS / "valid_oos_transformer.json")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        child(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stages", nargs="+", choices=("throughput", "select", "represent", "oos"))
    args = parser.parse_args()
    for stage in args.stages:
        start = time.perf_counter()
        {"throughput": throughput, "select": select, "represent": represent, "oos": oos}[stage]()
        print(f"{stage}: {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
