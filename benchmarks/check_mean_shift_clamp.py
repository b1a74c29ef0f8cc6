"""Why our mean-shift r2_mean_all differs from docs/evaluation.md's reference: clamping at zero.

The reference table's mean-shift is ``P = C + delta`` as is; virtualcell's pipelines clamp decoded
expression at 0 (log-normalised expression cannot be negative). This prints both for every Kang
(scGen valid) cell type, so the two tables can be compared.

    python benchmarks/check_mean_shift_clamp.py [--data ../shared/data/kang_pbmc_scgen_valid.h5ad]
"""

from __future__ import annotations

import argparse

import anndata as ad
import numpy as np

from virtualcell.metrics import perturbation_metrics, top_degs

KEYS = ("r2_mean_all", "r2_mean_top100", "pearson_delta", "edistance_ratio")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/kang_pbmc_scgen_valid.h5ad")
    args = parser.parse_args()
    adata = ad.read_h5ad(args.data)
    x = adata.X.toarray().astype(np.float64)
    cell_type = adata.obs["cell_type"].astype(str).to_numpy()
    stimulated = (adata.obs["condition"] == "stimulated").to_numpy()
    genes = list(map(str, adata.var_names))
    print("| cell type | mean-shift as is: " + " / ".join(KEYS) + " | clamped at 0: " + " / ".join(KEYS) + " |")
    print("|---|---|---|")
    for context in adata.obs["cell_type"].cat.categories:
        here = cell_type == context
        stim, ctrl = x[here & stimulated], x[here & ~stimulated]
        delta = x[~here & stimulated].mean(0) - x[~here & ~stimulated].mean(0)
        degs = top_degs(stim, ctrl, genes)
        cells = []
        for pred in (ctrl + delta, np.maximum(ctrl + delta, 0.0)):
            scores = perturbation_metrics(pred, stim, ctrl, genes, degs=degs)
            cells.append(" / ".join(f"{scores[k]:.3f}" for k in KEYS))
        print(f"| {context} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
