"""Sampling must not cost accuracy: ``predict(n_samples > 1).X`` against ``n_samples=1`` on real data (issue #11).

    flock /tmp/vc-bench.lock nice python benchmarks/check_sampled_mean.py --threads 2

Kang scGen valid set, CD4T held out (its stimulated cells never trained), PCA + latent arithmetic
fitted with the context column (so CD4T's predictions get the context random effect). Scores the
n_samples=1 prediction, ``X`` of the n_samples=20 prediction (now the central prediction) and its
``layers["sample_mean"]`` (the mean of the samples clamped at 0 after the random effect: what ``X`` was
before the fix) with metrics v2. Writes ``benchmarks/results/selection/sampled_mean.json``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "kang_pbmc_scgen_valid.h5ad"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--context", default="CD4T")
    parser.add_argument("--n-samples", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "selection" / "sampled_mean.json")
    args = parser.parse_args(argv)
    import anndata as ad
    import torch

    torch.set_num_threads(args.threads)
    import virtualcell as vc
    from virtualcell.metrics import perturbation_metrics, top_degs
    from virtualcell.evaluate.report import machine_info, write_json

    adata = ad.read_h5ad(DATA)
    cell_type = adata.obs["cell_type"].astype(str).to_numpy()
    stimulated = (adata.obs["condition"].astype(str) == "stimulated").to_numpy()
    here = cell_type == args.context
    pipe = vc.PerturbationPipeline(encoder="pca", manipulator="latent-arithmetic").fit(
        adata[~(here & stimulated)].copy(), context_key="cell_type", seed=args.seed, progress=False)
    control = adata[here & ~stimulated]
    genes = list(map(str, adata.var_names))
    stim, ctrl = np.asarray(adata[here & stimulated].X.toarray()), np.asarray(control.X.toarray())
    degs = top_degs(stim, ctrl, genes, n=100)
    reference = np.asarray(adata[~here].X.toarray())
    start = time.perf_counter()
    one = pipe.predict(control, target="stimulated", seed=args.seed)
    many = pipe.predict(control, target="stimulated", n_samples=args.n_samples, seed=args.seed)
    seconds = time.perf_counter() - start
    rows = {"n_samples=1 (X)": one.X, f"n_samples={args.n_samples} (X, central)": many.X,
            f"n_samples={args.n_samples} (sample_mean: X before the fix)": many.layers["sample_mean"]}
    scores = {label: perturbation_metrics(np.asarray(x), stim, ctrl, genes, degs=degs, reference=reference,
                                          seed=args.seed) for label, x in rows.items()}
    write_json(args.out, {
        "kind": "sampled-mean", "context": args.context, "pipeline": "pca+latent-arithmetic (context_key=cell_type)",
        "n_samples": args.n_samples, "context_effect_scale": 1.0, "scores": scores, "seconds_predict": seconds,
        "command": "python benchmarks/check_sampled_mean.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(), "dataset": str(DATA.name)})
    for label, s in scores.items():
        print(f"{label}: r2_mean_all {s['r2_mean_all']:.3f} r2_mean_top100 {s['r2_mean_top100']:.3f} "
              f"pearson_delta {s['pearson_delta']:.3f} edistance_ratio {s['edistance_ratio']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
