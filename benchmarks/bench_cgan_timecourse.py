"""Time-course forecast with the cgan manipulator on a simulated EMT-like course with known truth.

    python benchmarks/bench_cgan_timecourse.py [--threads 1] [--seed 0] [--epochs 20]

``virtualcell.datasets.simulate_time_course`` (3 cell types, 6 time points, logistic programme,
a known expected expression per type and time). One cell type's time points after t0 are held
out; the model is fitted on everything else, once without cell-type labels (its critic groups
cells by k-means) and once with them, then walks the held-out type's t0 cells forward through
t1..t5 (:meth:`CGANManipulator.rollout`). Printed per step: the
mean absolute error and R^2 of the predicted per-gene means against the simulator's truth, and the
Pearson correlation of the predicted change since t0 with the true change, beside two baselines:
``stay`` (the t0 cells) and ``mean-shift`` (t0 cells plus the change of the pooled mean of the other
types between t0 and the step, clipped at 0).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from virtualcell.component import Condition
from virtualcell.datasets import ground_truth_mean, simulate_time_course
from virtualcell.instruments.manipulators.cgan import CGANManipulator


def _scores(pred_mean: np.ndarray, truth: np.ndarray, start_truth: np.ndarray) -> dict[str, float]:
    change_pred, change_true = pred_mean - start_truth, truth - start_truth
    pearson = float(np.corrcoef(change_pred, change_true)[0, 1]) if change_pred.std() > 0 else 0.0
    return {"mae": float(np.abs(pred_mean - truth).mean()), "r2": float(np.corrcoef(pred_mean, truth)[0, 1] ** 2),
            "pearson_change": pearson}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--held-out", default="type_2")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    adata = simulate_time_course(n_cells_per_step=150, n_genes=500, n_cell_types=3,
                                 time_points=(0, 1, 2, 3, 4, 5), effect_size=1.5, seed=args.seed)
    steps = list(adata.uns["condition_order"])
    x = torch.from_numpy(np.asarray(adata.X, dtype=np.float32))
    step_ids = torch.tensor(adata.obs["condition"].cat.codes.to_numpy(), dtype=torch.long)
    types = adata.obs["cell_type"].astype(str).to_numpy()
    held = types == args.held_out
    train = ~(held & (step_ids.numpy() > 0))
    start = held & (step_ids.numpy() == 0)

    type_ids = torch.tensor(adata.obs["cell_type"].cat.codes.to_numpy(), dtype=torch.long)
    paths, seconds = {}, {}
    for name, context in (("cgan rollout", None), ("cgan rollout, types given", type_ids[train])):
        began = time.perf_counter()
        model = CGANManipulator(max_epochs=args.epochs, batch_size=64)
        model.fit(x[train], Condition(step_ids[train], context=context), seed=args.seed, progress=False)
        seconds[name] = time.perf_counter() - began
        paths[name] = model.rollout(x[start], list(range(1, len(steps))), source=0)      # [steps - 1, n, genes]

    others = ~held
    start_truth = ground_truth_mean(adata, args.held_out, steps[0])
    rows = []
    for k, step in enumerate(steps[1:], start=1):
        truth = ground_truth_mean(adata, args.held_out, step)
        pooled_shift = (x[others & (step_ids.numpy() == k)].mean(0) - x[others & (step_ids.numpy() == 0)].mean(0))
        baselines = {"stay": x[start].mean(0).numpy(),
                     "mean-shift": (x[start] + pooled_shift).clamp_min(0).mean(0).numpy(),
                     **{name: path[k - 1].mean(0).numpy() for name, path in paths.items()}}
        rows.append({"step": step, **{name: _scores(mean, truth, start_truth) for name, mean in baselines.items()}})

    fitted = ", ".join(f"{name} {value:.1f} s" for name, value in seconds.items())
    print(f"cgan fitted ({fitted}; {args.threads} torch thread(s)), {int(train.sum())} training cells, "
          f"{x.shape[1]} genes; held-out type {args.held_out}, rolled out from {int(start.sum())} t0 cells")
    methods = ["stay", "mean-shift", *paths]
    print("| step | " + " | ".join(f"{m}: MAE / R² / r(change)" for m in methods) + " |")
    print("|---" * (len(methods) + 1) + "|")
    for row in rows:
        cells = [f"{row[m]['mae']:.3f} / {row[m]['r2']:.3f} / {row[m]['pearson_change']:.3f}" for m in methods]
        print(f"| {row['step']} | " + " | ".join(cells) + " |")
    print(json.dumps({"seconds_fit": seconds, "rows": rows}))


if __name__ == "__main__":
    main()
