"""Metrics v2 against docs/evaluation.md's reference table: the unclamped mean-shift baseline on Kang valid.

    python benchmarks/check_reference_figures.py --data ../shared/data/kang_pbmc_scgen_valid.h5ad [--contexts CD4T,B]

docs/evaluation.md defines mean-shift as ``P = C + (mean stimulated − mean control over the other contexts)``
in expression space, without the clamp at 0 that every pipeline's output gets (the harness's
``mean-shift`` row is clamped). This recomputes both forms with ``perturbation_metrics`` (PCA of the cells
outside the context, seed 0) so they can be compared with the reference figures; writes
``benchmarks/results/harness/reference-check.json``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "results" / "harness" / "reference-check.json"
KEYS = ("r2_mean_all", "r2_mean_top100", "pearson_delta", "edistance_ratio", "mmd_ratio", "std_ratio_top100")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--contexts", default=None, help="comma-separated (default: all 7)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import anndata as ad

    from virtualcell.evaluate import report as reporting
    from virtualcell.metrics import fit_pca_space
    from virtualcell.metrics import perturbation_metrics, top_degs

    adata = ad.read_h5ad(args.data)
    x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    cell_type = adata.obs["cell_type"].astype(str).to_numpy()
    stimulated = (adata.obs["condition"].astype(str) == "stimulated").to_numpy()
    genes = list(map(str, adata.var_names))
    contexts = args.contexts.split(",") if args.contexts else list(dict.fromkeys(cell_type))
    rows = {}
    for context in contexts:
        here = cell_type == context
        stim, ctrl = x[here & stimulated], x[here & ~stimulated]
        delta = x[~here & stimulated].mean(0) - x[~here & ~stimulated].mean(0)
        space = fit_pca_space(x[~here], 50, args.seed)
        degs = top_degs(stim, ctrl, genes)
        rows[context] = {}
        for name, pred in (("mean-shift (unclamped)", ctrl + delta), ("mean-shift (clamped)", np.maximum(ctrl + delta, 0))):
            scores = perturbation_metrics(pred, stim, ctrl, genes, degs=degs, reference=space, seed=args.seed)
            rows[context][name] = {k: scores[k] for k in KEYS}
            print(context, name, {k: round(scores[k], 3) for k in KEYS}, flush=True)
    result = {"command": "python benchmarks/check_reference_figures.py " + shlex.join(sys.argv[1:] if argv is None else argv),
              "machine": reporting.machine_info(), "results": rows}
    reporting.write_json(OUT, result)
    return result


if __name__ == "__main__":
    main()
