"""Are two runs the same? Bitwise comparison of their saved predictions and metric differences.

    python benchmarks/compare_predictions.py benchmarks/out/old/diffusion-valid-latent-effect benchmarks/out/diffusion-valid
    python benchmarks/compare_predictions.py benchmarks/out/diffusion-tune/cd4t-default benchmarks/out/diffusion-valid

For every ``predictions/<context>.h5ad`` the two folders share: whether ``X`` is bitwise equal
(``numpy.array_equal``) and, when both files have them, the interval columns ``var["mean_q05"]``
and ``var["mean_q95"]``. For every metric of every context both ``results.json`` hold (the
harness's or ``bench_diffusion.py oos``'s layout): the largest absolute difference.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from summarize_runs import _harness_form


def _metrics(run: Path) -> dict[tuple[str, str, str], float]:
    """{(method, context, metric): value} of a run's results.json (floats only)."""
    report = _harness_form(json.loads((run / "results.json").read_text()))
    return {(method, context, key): value for method, per_context in report["results"].items()
            for context, values in per_context.items() for key, value in values.items() if isinstance(value, float)}


def main() -> None:
    import anndata as ad

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    args = parser.parse_args()

    names = sorted({p.name for p in (args.first / "predictions").glob("*.h5ad")}
                   & {p.name for p in (args.second / "predictions").glob("*.h5ad")})
    if not names:
        raise SystemExit("The two folders share no predictions/<context>.h5ad.")
    for name in names:
        a, b = ad.read_h5ad(args.first / "predictions" / name), ad.read_h5ad(args.second / "predictions" / name)
        same = {"X": bool(np.array_equal(np.asarray(a.X), np.asarray(b.X)))}
        for column in ("mean_q05", "mean_q95"):
            if column in a.var and column in b.var:
                same[column] = bool(np.array_equal(a.var[column].to_numpy(), b.var[column].to_numpy()))
        print(f"{name}: {a.n_obs} x {a.n_vars}, bitwise equal: {json.dumps(same)}")

    first, second = _metrics(args.first), _metrics(args.second)
    shared = sorted(set(first) & set(second))
    by_metric: dict[str, float] = {}
    for method, context, key in shared:
        difference = abs(first[method, context, key] - second[method, context, key])
        by_metric[key] = max(by_metric.get(key, 0.0), difference)
    print(f"{len(shared)} shared (method, context, metric) values; largest absolute difference per metric:")
    for key, difference in sorted(by_metric.items()):
        print(f"  {key}: {difference:.3g}")


if __name__ == "__main__":
    main()
