"""PERT-unseen on Papalexi 2021: every method predicts a knockout it never saw, against the baselines.

    flock /tmp/vc-bench.lock nice python benchmarks/bench_pert_unseen.py --threads 2 > /tmp/h-bench.log 2>&1

Protocol (fixed before any run; nothing tuned on held-out targets):
- ``papalexi2021_crispr_thp1.h5ad`` without ``ambiguous`` cells, ``normalize_total`` + ``log1p``
  on all 299 genes (docs/evaluation.md, PERT).
- Held out in turn: each targeted gene with >= 100 cells (all replicates) that is itself one of
  the 299 measured genes (only those can be placed in a network built from this data; the other
  targets still train every fold). Train on every other cell, predict from all control cells.
- Methods, all in gene space (identity encoder): ``gene-network`` on three network sources built
  from each fold's control cells (co-expression top-10 |r|; 10-NN in PCA-loading space; ``none``:
  no edges, node features only), ``nearest-target`` (co-expression; k-NN), ``mean-perturbation``,
  ``control``, and the noise ceiling. gene-network's hyper-parameters are its defaults (hidden 32,
  2 GCN layers, 100 epochs, Adam 1e-2, weight decay 1e-3), fixed a priori; the weight of its network
  deviation (0, 0.25, 0.5, 1) and whether to add the knocked-out gene's own-expression effect are
  chosen by leave-one-target-out over each fold's training targets only (``scale="cv"``).
- Metrics v2 per held-out target and their mean; ``discrimination`` among the held-out targets.
- ``--methods own-effect`` (run ``papalexi_own_effect_ablation``): gene-network with the network's
  weight fixed at 0 (the mean response plus the learned own-gene effect) beside the full model.
Writes ``benchmarks/results/pert_unseen/<run>.json`` (and results.md beside the run's out folder).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "papalexi2021_crispr_thp1.h5ad"


def methods(epochs: int, set_name: str = "main") -> dict:
    gene_network = lambda network: ("identity-encoder", {"name": "gene-network", "network": network, "epochs": epochs})
    if set_name == "own-effect":   # ablation: the knocked-out gene's own-expression effect alone (network weight 0)
        return {"gene-network (coexpression)": gene_network("coexpression"),
                "gene-network (own-gene effect only, scale=0)": ("identity-encoder", {
                    "name": "gene-network", "network": "none", "epochs": epochs, "scale": 0.0}),
                "mean-perturbation": ("identity-encoder", "mean-perturbation"),
                "control": ("identity-encoder", "control")}
    return {
        "gene-network (coexpression)": gene_network("coexpression"),
        "gene-network (knn)": gene_network("knn"),
        "gene-network (none)": gene_network("none"),
        "nearest-target (coexpression)": ("identity-encoder", {"name": "nearest-target", "network": "coexpression"}),
        "nearest-target (knn)": ("identity-encoder", {"name": "nearest-target", "network": "knn"}),
        "mean-perturbation": ("identity-encoder", "mean-perturbation"),
        "control": ("identity-encoder", "control"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--min-cells", type=int, default=100)
    parser.add_argument("--methods", choices=("main", "own-effect"), default="main",
                        help="main: every method and network source; own-effect: the own-gene-effect ablation")
    parser.add_argument("--run", default="papalexi_leave_one_target_out")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "pert_unseen")
    args = parser.parse_args(argv)
    if not args.data.exists():
        print(f"No dataset at {args.data}; this benchmark needs ../shared/data.", file=sys.stderr)
        return 1
    import anndata as ad
    import torch

    torch.set_num_threads(args.threads)
    from virtualcell.evaluate import report as reporting
    from virtualcell.evaluate.pert_unseen import markdown_table, run_pert_unseen

    obs = ad.read_h5ad(args.data, backed="r")
    counts = obs.obs["condition"].astype(str).value_counts()
    genes = set(map(str, obs.var_names))
    targets = sorted(t for t, n in counts.items() if t in genes and n >= args.min_cells)
    obs.file.close()
    start = time.perf_counter()
    report = run_pert_unseen(args.data, methods=methods(args.epochs, args.methods), baselines=False, targets=targets, min_cells=args.min_cells,
                             preprocess="log1p", seed=0, progress=False,
                             out=ROOT / "benchmarks" / "out" / f"pert_unseen_{args.run}",
                             overwrite=True,   # progress after every fold (benchmarks/out is not committed)
                             command=shlex.join(["python", "benchmarks/bench_pert_unseen.py", *(argv or sys.argv[1:])]))
    report["seconds_total"] = time.perf_counter() - start
    report["threads"] = args.threads
    report["targets_not_in_data_genes"] = sorted(t for t, n in counts.items()
                                                 if t not in genes and t not in ("control", "ambiguous"))
    report["protocol_note"] = (__doc__.split("Protocol")[1].split("Writes")[0]).strip()
    reporting.write_json(args.out / f"{args.run}.json", reporting.json_clean(report))
    print(markdown_table(report))
    print(f"{report['seconds_total']:.0f} s on {args.threads} threads -> {args.out / (args.run + '.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
