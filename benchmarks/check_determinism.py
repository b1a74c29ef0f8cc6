"""Same seed, same numbers: run one ``virtualcell benchmark`` split twice, in two processes, and compare.

    python benchmarks/check_determinism.py [--encoder vae] [--manipulator latent-arithmetic] \
        [--contexts CD4T] [--seed 0] [--threads 1] [--data ../shared/data/kang_pbmc_scgen_valid.h5ad]

Each run is a fresh ``virtualcell benchmark oos`` process on CPU writing to its own folder. The
script prints, per method and context, whether every metric in ``results.json`` is equal and
whether the predicted expression matrices (``predictions/<context>.h5ad``) are bitwise identical,
and exits 1 when anything differs. Timings (``seconds_*``) are left out of the comparison.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import anndata as ad
import numpy as np

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "kang_pbmc_scgen_valid.h5ad"


def _run(args: argparse.Namespace, out: Path) -> dict:
    command = ["virtualcell", "benchmark", "oos", "--data", str(args.data), "--encoder", args.encoder,
               "--manipulator", args.manipulator, "--contexts", args.contexts, "--seed", str(args.seed),
               "--threads", str(args.threads), "--preprocess", "none", "--out", str(out), "--no-plots"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "results.json").read_text())


def _dense(path: Path) -> np.ndarray:
    x = ad.read_h5ad(path).X
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--encoder", default="vae")
    parser.add_argument("--manipulator", default="latent-arithmetic")
    parser.add_argument("--contexts", default="CD4T")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    identical = True
    with tempfile.TemporaryDirectory() as tmp:
        first, second = Path(tmp) / "first", Path(tmp) / "second"
        results = [_run(args, first), _run(args, second)]
        for method, contexts in results[0]["results"].items():
            for context, metrics in contexts.items():
                other = results[1]["results"][method][context]
                keys = [k for k in metrics if not k.startswith("seconds")]
                same_metrics = all(metrics[k] == other[k] for k in keys)
                row = {"method": method, "context": context, "metrics_equal": same_metrics,
                       **{k: metrics[k] for k in ("r2_mean_all", "r2_mean_top100", "pearson_delta", "edistance_ratio")}}
                identical &= same_metrics
                if method == results[0]["method"]["label"]:
                    a, b = (_dense(run / "predictions" / f"{context}.h5ad") for run in (first, second))
                    row["predictions_bitwise_equal"] = bool(a.shape == b.shape and np.array_equal(a, b))
                    row["predicted_cells"] = int(a.shape[0])
                    identical &= row["predictions_bitwise_equal"]
                print(json.dumps(row))
    print(json.dumps({"identical": identical, "seed": args.seed, "threads": args.threads}))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
