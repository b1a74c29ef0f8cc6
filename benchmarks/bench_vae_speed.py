"""VAE (scGen) training speed and CD4T quality on Kang's scGen validation set.

Trains ``PerturbationPipeline(encoder="vae", manipulator="latent-arithmetic")`` on every cell of
``kang_pbmc_scgen_valid.h5ad`` except the stimulated CD4T cells (the scGen / EVALUATION.md OOS
split), predicts stimulated CD4T from control CD4T and prints, per seed, the training seconds,
epochs and the EVALUATION.md metrics; the reference is scGen: 328 s, 0.941 / 0.923.

    python benchmarks/bench_vae_speed.py                          # this package's defaults
    python benchmarks/bench_vae_speed.py --preset scgen           # scGen's batch 32 / lr 1e-3 / patience 25
    python benchmarks/bench_vae_speed.py --set batch_size=128 --set lr=2e-3 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "kang_pbmc_scgen_valid.h5ad"


def parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--held-out", default="CD4T")
    parser.add_argument("--preset", choices=["default", "scgen"], default="default")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="VAEEncoder argument override (JSON value), repeatable")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()

    import anndata as ad
    import torch

    from virtualcell.evaluate.metrics import perturbation_metrics, top_degs
    from virtualcell.pipelines import PerturbationPipeline
    from virtualcell.representations.vae import SCGEN_SETTINGS

    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.data.exists():
        raise SystemExit(f"{args.data} not found; this benchmark needs ../shared/data (see data/README.md).")
    kwargs = dict(SCGEN_SETTINGS) if args.preset == "scgen" else {}
    for item in args.set:
        key, _, value = item.partition("=")
        kwargs[key] = parse_value(value)

    adata = ad.read_h5ad(args.data)
    adata.X = adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X
    is_type = (adata.obs["cell_type"] == args.held_out).to_numpy()
    is_stim = (adata.obs["condition"] == "stimulated").to_numpy()
    train = adata[~(is_type & is_stim)].copy()
    ctrl, stim = adata[is_type & ~is_stim].copy(), adata[is_type & is_stim].copy()
    genes = list(adata.var_names)
    degs = top_degs(stim.X, ctrl.X, genes, 100)

    rows = []
    for seed in args.seeds:
        pipe = PerturbationPipeline(encoder={"name": "vae", **kwargs}, manipulator="latent-arithmetic")
        began, cpu_began = time.perf_counter(), time.process_time()
        pipe.fit(train, condition_key="condition", control="control", context_key="cell_type", seed=seed,
                 progress=False)
        fit_seconds, fit_cpu = time.perf_counter() - began, time.process_time() - cpu_began
        began = time.perf_counter()
        pred = pipe.predict(ctrl, target="stimulated", seed=seed)
        predict_seconds = time.perf_counter() - began
        metrics = perturbation_metrics(pred.X, stim.X, ctrl.X, genes, degs=degs)
        history = pipe.encoder.history
        row = {"seed": seed, "train_s": round(history.seconds, 1), "fit_s": round(fit_seconds, 1),
               "fit_cpu_s": round(fit_cpu, 1), "predict_s": round(predict_seconds, 2), "epochs": len(history.epochs),
               "best_epoch": history.best_epoch,
               **{k: round(v, 4) for k, v in metrics.items()}}
        rows.append(row)
        print(json.dumps(row), flush=True)

    summary = {"held_out": args.held_out, "preset": args.preset, "overrides": kwargs,
               "encoder_config": dict(pipe.encoder.config), "torch_threads": torch.get_num_threads(),
               "cpu_count": os.cpu_count(), "load_avg_after": os.getloadavg(), "machine": platform.processor(),
               "torch": torch.__version__}
    for key in ("train_s", "epochs", "r2_mean_all", "r2_mean_top100", "pearson_delta", "edistance_ratio"):
        values = [r[key] for r in rows]
        summary[f"mean_{key}"] = round(statistics.fmean(values), 4)
        if len(values) > 1:
            summary[f"min_{key}"] = min(values)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
