"""``virtualcell demo``: the main job on built-in simulated data, end to end in seconds."""

from __future__ import annotations

import json
import time
from pathlib import Path

__all__ = ["run_demo"]

BASELINES = (("identity-encoder", "control"), ("identity-encoder", "mean-shift"))


def run_demo(out: Path = Path("virtualcell-demo"), *, encoder: str = "pca", manipulator: str = "latent-arithmetic",
             held_out: str = "type_0", n_cell_types: int = 4, n_genes: int = 200, seed: int = 0) -> dict:
    """Simulate, hold out ``held_out``'s stimulated cells, predict them with the method and baselines.

    Writes ``out/metrics.json``, ``out/metrics.md``, ``out/mean_scatter.png``, ``out/metrics.png`` and the
    fitted pipeline in ``out/pipeline``; returns the metrics per method.
    """
    from rich.console import Console
    from rich.table import Table

    from .datasets import simulate_perturbation
    from .metrics import perturbation_metrics, top_degs
    from .evaluate.plots import mean_scatter, metrics_bar
    from .evaluate.report import write_text
    from .pipelines import PerturbationPipeline

    console = Console(width=None if Console().is_terminal else 110)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    adata = simulate_perturbation(n_cells_per_group=150, n_genes=n_genes, n_cell_types=n_cell_types, seed=seed)
    types = list(adata.obs["cell_type"].cat.categories)
    if held_out not in types:
        raise ValueError(f"--held-out {held_out!r} is not a simulated cell type; choose one of {types}.")
    in_type = (adata.obs["cell_type"] == held_out).to_numpy()
    stimulated = (adata.obs["condition"] == "stimulated").to_numpy()
    train, ctrl, stim = adata[~(in_type & stimulated)].copy(), adata[in_type & ~stimulated], adata[in_type & stimulated]
    console.print(f"simulated {adata.n_obs} cells x {adata.n_vars} genes, {n_cell_types} cell types; "
                  f"hiding the {stim.n_obs} stimulated cells of {held_out} and predicting them from its "
                  f"{ctrl.n_obs} control cells")

    genes = list(map(str, adata.var_names))
    degs = top_degs(stim.X, ctrl.X, genes, n=min(100, n_genes // 2))
    methods = {f"{encoder} + {manipulator}": (encoder, manipulator)} | {m: (e, m) for e, m in BASELINES}
    results, predictions = {}, {}
    for label, (enc, man) in methods.items():
        began = time.perf_counter()
        pipeline = PerturbationPipeline(encoder=enc, manipulator=man).fit(
            train, condition_key="condition", control="control", context_key="cell_type", seed=seed, progress=False)
        fitted = time.perf_counter()
        predicted = pipeline.predict(ctrl, target="stimulated", seed=seed)
        metrics = perturbation_metrics(predicted.X, stim.X, ctrl.X, genes, degs=degs,
                                       reference=adata[~in_type].X)   # PCA of the other cell types (EVALUATION.md)
        metrics |= {"seconds_fit": fitted - began, "seconds_predict": time.perf_counter() - fitted}
        results[label], predictions[label] = metrics, predicted
        if label == f"{encoder} + {manipulator}":
            pipeline.save(out / "pipeline", overwrite=True)

    shown = ("r2_mean_all", "r2_mean_top100", "pearson_delta", "edistance_ratio", "std_ratio_top100", "seconds_fit")
    headers = ("R² mean", "R² top DEGs", "pearson Δ", "E-dist ratio", "std ratio", "fit (s)")
    table = Table(title=f"held-out {held_out}: predicted vs real stimulated cells")
    table.add_column("method", no_wrap=True)
    for header in headers:
        table.add_column(header, justify="right")
    for label, metrics in results.items():
        table.add_row(label, *(f"{metrics[k]:.3f}" for k in shown))
    console.print(table)

    method = f"{encoder} + {manipulator}"
    mean_scatter(predictions[method].X, stim.X, genes, degs=degs, highlight=degs[:10],
                 title=f"{method}, held-out {held_out}", path=out / "mean_scatter.png")
    metrics_bar({m: {held_out: r["pearson_delta"]} for m, r in results.items()}, "pearson_delta", path=out / "metrics.png")
    write_text(out / "metrics.json", json.dumps({"held_out": held_out, "seed": seed, "results": results}, indent=2))
    lines = ["| method | " + " | ".join(shown) + " |", "|---" * (len(shown) + 1) + "|"]
    lines += [f"| {m} | " + " | ".join(f"{r[k]:.3f}" for k in shown) + " |" for m, r in results.items()]
    write_text(out / "metrics.md", "\n".join(lines) + "\n")
    console.print(f"wrote {out}/metrics.json, metrics.md, mean_scatter.png, metrics.png and the fitted pipeline {out}/pipeline")
    return results
