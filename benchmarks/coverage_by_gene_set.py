"""Does the choice of genes decide the coverage? The saved 90% intervals of the mean, scored on gene sets
chosen with and without the held-out cell type's real response.

    python benchmarks/coverage_by_gene_set.py benchmarks/out/diffusion-valid-weibull --data ../shared/data/kang_pbmc_scgen_valid.h5ad
    python benchmarks/coverage_by_gene_set.py benchmarks/out/diffusion-full-weibull --data ../shared/data/kang_ifnb_full.h5ad \
        --preprocess kang-full --context-key cell_type_coarse

Reads a ``bench_diffusion.py oos`` folder (``predictions/<context>.h5ad``: predicted cells ``X`` and
``var["mean_q05"]``, ``var["mean_q95"]``, the predicted interval of each gene's mean, and
``var["top100_deg"]``) and the data it was run on (same preprocessing). For each held-out cell type it
prints the fraction of genes whose real stimulated mean lies in the interval, for:
- ``own_degs``: the type's own top-100 DEGs (the benchmark's ``coverage90``; chosen with its real response);
- ``predicted``: the 100 genes with the largest predicted response |mean(predicted) - mean(control)|;
- ``training``: the 100 genes with the largest mean response of the other cell types;
- ``all``: every gene.
The last three are chosen without the held-out type's real stimulated cells.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def _responses(x: np.ndarray, obs, context_key: str, held_out: str) -> np.ndarray:
    """Mean over the other contexts of (mean stimulated - mean control) per gene: [genes]."""
    responses = []
    for context in obs[context_key].astype(str).unique():
        if context == held_out:
            continue
        rows = (obs[context_key].astype(str) == context).to_numpy()
        stim, ctrl = rows & (obs["condition"] == "stimulated").to_numpy(), rows & (obs["condition"] == "control").to_numpy()
        if stim.any() and ctrl.any():
            responses.append(x[stim].mean(0) - x[ctrl].mean(0))
    return np.mean(responses, axis=0)


def main() -> None:
    import anndata as ad

    from virtualcell.evaluate.benchmark import _prepare, _safe_name

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--data", required=True)
    parser.add_argument("--preprocess", default=None)
    parser.add_argument("--context-key", default="cell_type")
    parser.add_argument("--n", type=int, default=100, help="genes per chosen set")
    args = parser.parse_args()

    adata = ad.read_h5ad(args.data)
    x, genes, _ = _prepare(adata, None if args.preprocess in (None, "none") else args.preprocess)
    x = np.asarray(x, dtype=np.float64)
    obs = adata.obs
    contexts = list(json.loads((args.run / "results.json").read_text())["results"])
    sets = ("own_degs", "predicted", "training", "all")
    print(f"`python benchmarks/coverage_by_gene_set.py {args.run} --data {args.data}"
          + (f" --preprocess {args.preprocess}" if args.preprocess else "")
          + (f" --context-key {args.context_key}" if args.context_key != "cell_type" else "") + "`\n")
    print("| context | " + " | ".join(sets) + " |\n|---" * 1 + "|---" * len(sets) + "|")
    table = []
    for context in contexts:
        saved = ad.read_h5ad(args.run / "predictions" / f"{_safe_name(context)}.h5ad")
        if list(saved.var_names) != list(genes):
            raise ValueError(f"{context}: the saved genes differ from the data's; pass the run's --preprocess.")
        in_context = (obs[args.context_key].astype(str) == context).to_numpy()
        real = x[in_context & (obs["condition"] == "stimulated").to_numpy()].mean(0)
        control = x[in_context & (obs["condition"] == "control").to_numpy()].mean(0)
        predicted = np.asarray(saved.X, dtype=np.float64).mean(0)
        inside = (real >= saved.var["mean_q05"].to_numpy()) & (real <= saved.var["mean_q95"].to_numpy())
        chosen = {
            "own_degs": saved.var["top100_deg"].to_numpy(dtype=bool),
            "predicted": np.argsort(-np.abs(predicted - control))[:args.n],
            "training": np.argsort(-np.abs(_responses(x, obs, args.context_key, context)))[:args.n],
            "all": np.ones(len(genes), dtype=bool),
        }
        row = [float(inside[chosen[name]].mean()) for name in sets]
        table.append(row)
        print(f"| {context} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    print("| **mean** | " + " | ".join(f"{v:.3f}" for v in np.mean(table, axis=0)) + " |")


if __name__ == "__main__":
    main()
