"""``virtualcell demo``: the main job on built-in simulated data, end to end in well under a minute.

The simulation (:func:`simulate_demo`) is built so that a global shift fails: the cell types come in
two families (even and odd ``type_<k>``), each marked by its own genes in every condition, and the
stimulation's response differs by family (its own genes, up or down), on top of a small shared
response. The held-out type's stimulated cells are hidden; ``mean-shift`` (and any other global
shift) predicts the average of both families' responses for it, half wrong. The demo lets
:func:`virtualcell.select` choose among :data:`DEMO_CANDIDATES` by inner leave-one-cell-type-out
cross-validation on the training cells, and compares its choice, the ``--encoder`` +
``--manipulator`` pipeline and both baselines (``control``: no change; ``mean-shift``) on the
hidden cells.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

__all__ = ["run_demo", "simulate_demo", "DEMO_CANDIDATES", "SHOWN_METRICS"]

BASELINES = (("identity-encoder", "control"), ("identity-encoder", "mean-shift"))
#: what select chooses among: a global shift, scGen's latent arithmetic, and per-cell OT-matched responses
DEMO_CANDIDATES = ("mean-shift", "pca+latent-arithmetic", "pca+optimal-transport(mean=local)")
#: metric -> (column header with its better direction, True when higher is better; None: 1 is best)
SHOWN_METRICS = {"pearson_delta": ("pearson Δ ↑", True), "r2_mean_top100": ("R² top DEGs ↑", True),
                 "r2_mean_all": ("R² mean ↑", True), "edistance_ratio": ("E-dist ratio ↓", False),
                 "std_ratio_top100": ("std ratio →1", None), "seconds_fit": ("fit (s)", False)}
PLOTTED = ("pearson_delta", "r2_mean_top100", "edistance_ratio")


def simulate_demo(*, n_cell_types: int = 4, n_genes: int = 200, n_cells_per_group: int = 150, seed: int = 0):
    """Cell types x {control, stimulated} whose response differs by family (module doc): AnnData
    [n_cell_types * 2 * n_cells_per_group, n_genes], log-normalised; ``obs["family"]`` is the truth."""
    from .datasets import simulate_perturbation

    adata = simulate_perturbation(n_cells_per_group=n_cells_per_group, n_genes=n_genes, n_cell_types=n_cell_types,
                                  heterogeneity=0.0, effect_size=0.3, seed=seed)
    rng = np.random.default_rng([seed, 16])
    x = np.asarray(adata.X, dtype=np.float32).copy()
    family = adata.obs["cell_type"].cat.codes.to_numpy() % 2
    stimulated = (adata.obs["condition"] == "stimulated").to_numpy()
    genes = rng.permutation(n_genes)
    block = max(2, n_genes // 20)                                  # marker genes per family
    size = max(2, (3 * n_genes) // 20)                             # response genes per family
    for f in (0, 1):
        markers = genes[f * block:(f + 1) * block]
        responding = genes[2 * block + f * size:2 * block + (f + 1) * size]
        x[np.ix_(family == f, markers)] += 2.0
        response = rng.choice([-1.0, 1.0], len(responding)) * rng.uniform(1.0, 2.0, len(responding))
        x[np.ix_((family == f) & stimulated, responding)] += response.astype(np.float32)
    adata.X = np.clip(x, 0, None)
    adata.obs["family"] = np.where(family == 0, "even", "odd")
    adata.uns["demo"] = {"families": "type_<k>: even k / odd k", "marker_genes": int(block),
                         "response_genes_per_family": int(size), "seed": int(seed)}
    return adata


def _plot_metrics(results: dict, held_out: str, path: Path) -> None:
    """One panel per metric of :data:`PLOTTED`, one bar per method, titled with the better direction."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    methods = list(results)
    fig = Figure(figsize=(4.2 * len(PLOTTED), 4.2), layout="constrained")
    for ax, metric in zip(fig.subplots(1, len(PLOTTED)), PLOTTED):
        header, higher = SHOWN_METRICS[metric]
        values = [results[m][metric] for m in methods]
        ax.bar(range(len(methods)), values, color=[f"C{i}" for i in range(len(methods))])
        labels = ["select's pick" if m.startswith("select") else m.replace(" + ", "+\n") for m in methods]
        ax.set_xticks(range(len(methods)), labels, fontsize=8)
        ax.set_title(f"{header[:-2]}: {'higher' if higher else 'lower'} is better", fontsize=10)
        for i, v in enumerate(values):
            ax.annotate(f"{v:.2f}", (i, v), ha="center", va="bottom", fontsize=8)
    picks = [m.split(" → ", 1)[1] for m in methods if m.startswith("select") and " → " in m]
    chosen = f"\nselect's pick: {picks[0]}" if picks else ""
    fig.suptitle(f"held-out {held_out}: predicted vs real stimulated cells{chosen}")
    fig.savefig(path, dpi=120)


def run_demo(out: Path = Path("virtualcell-demo"), *, encoder: str = "pca", manipulator: str = "latent-arithmetic",
             held_out: str = "type_0", n_cell_types: int = 4, n_genes: int = 200, seed: int = 0) -> dict:
    """Simulate (:func:`simulate_demo`), hide ``held_out``'s stimulated cells, predict them with the pipeline
    ``select`` chooses, with ``encoder`` + ``manipulator`` and with both baselines.

    Writes ``out/metrics.json``, ``out/metrics.md``, ``out/mean_scatter.png`` (select's choice),
    ``out/metrics.png`` (three metrics, each titled with its better direction) and select's fitted
    pipeline in ``out/pipeline``; returns the metrics per method.
    """
    from rich.console import Console
    from rich.table import Table

    from .evaluate.plots import mean_scatter
    from .evaluate.report import write_text
    from .metrics import perturbation_metrics, top_degs
    from .pipelines import PerturbationPipeline
    from .selection import select

    if n_cell_types < 4:
        raise ValueError(f"--n-cell-types must be at least 4 (got {n_cell_types}): select's leave-one-cell-type-out "
                         "cross-validation needs 3 training cell types besides the held-out one.")
    console = Console(width=None if Console().is_terminal else 110)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    adata = simulate_demo(n_cell_types=n_cell_types, n_genes=n_genes, seed=seed)
    types = list(adata.obs["cell_type"].cat.categories)
    if held_out not in types:
        raise ValueError(f"--held-out {held_out!r} is not a simulated cell type; choose one of {types}.")
    in_type = (adata.obs["cell_type"] == held_out).to_numpy()
    stimulated = (adata.obs["condition"] == "stimulated").to_numpy()
    train, ctrl, stim = adata[~(in_type & stimulated)].copy(), adata[in_type & ~stimulated], adata[in_type & stimulated]
    train.obs = train.obs.drop(columns="family")
    console.print(f"simulated {adata.n_obs} cells x {adata.n_vars} genes, {n_cell_types} cell types in two families "
                  f"whose responses differ; hiding the {stim.n_obs} stimulated cells of {held_out} and predicting "
                  f"them from its {ctrl.n_obs} control cells")

    genes = list(map(str, adata.var_names))
    degs = top_degs(stim.X, ctrl.X, genes, n=min(100, n_genes // 2))
    began = time.perf_counter()
    chosen = select(train, candidates=list(DEMO_CANDIDATES), condition_key="condition", control="control",
                    context_key="cell_type", seed=seed, progress=False)
    selection = chosen.metadata.get("selection", {})
    winner = f"select → {selection.get('winner', type(chosen).__name__)}"
    fitted = {winner: (chosen, time.perf_counter() - began)}
    for enc, man in ((encoder, manipulator), *BASELINES):
        began = time.perf_counter()
        pipeline = PerturbationPipeline(encoder=enc, manipulator=man).fit(
            train, condition_key="condition", control="control", context_key="cell_type", seed=seed, progress=False)
        fitted.setdefault(man if enc == "identity-encoder" else f"{enc} + {man}", (pipeline, time.perf_counter() - began))
    results, predictions = {}, {}
    for label, (pipeline, seconds) in fitted.items():
        predicted = pipeline.predict(ctrl, target="stimulated", seed=seed)
        metrics = perturbation_metrics(predicted.X, stim.X, ctrl.X, genes, degs=degs,
                                       reference=adata[~in_type].X)   # PCA of the other cell types (docs/evaluation.md)
        results[label], predictions[label] = metrics | {"seconds_fit": seconds}, predicted
    chosen.save(out / "pipeline", overwrite=True)

    table = Table(title=f"held-out {held_out}: predicted vs real stimulated cells (↑ higher is better, ↓ lower)")
    table.add_column("method", no_wrap=True)
    for header, _ in SHOWN_METRICS.values():
        table.add_column(header, justify="right")
    for label, metrics in results.items():
        table.add_row(label, *(f"{metrics[k]:.3f}" for k in SHOWN_METRICS))
    console.print(table)
    weights = chosen.metadata.get("ensemble")
    console.print(f"select chose {selection.get('winner')!r} by inner leave-one-cell-type-out CV on the training cells "
                  f"among {list(DEMO_CANDIDATES)}" + (f" (weights {', '.join(f'{k} {v:.2f}' for k, v in weights.items())})"
                                                      if weights else ""))

    mean_scatter(predictions[winner].X, stim.X, genes, degs=degs, highlight=degs[:10],
                 title=f"{winner}, held-out {held_out}", path=out / "mean_scatter.png")
    _plot_metrics(results, held_out, out / "metrics.png")
    write_text(out / "metrics.json", json.dumps({"held_out": held_out, "seed": seed, "candidates": list(DEMO_CANDIDATES),
                                                 "results": results}, indent=2))
    lines = ["| method | " + " | ".join(SHOWN_METRICS) + " |", "|---" * (len(SHOWN_METRICS) + 1) + "|"]
    lines += [f"| {m} | " + " | ".join(f"{r[k]:.3f}" for k in SHOWN_METRICS) + " |" for m, r in results.items()]
    write_text(out / "metrics.md", "\n".join(lines) + "\n")
    console.print(f"wrote {out}/metrics.json, metrics.md, mean_scatter.png, metrics.png and select's pipeline "
                  f"{out}/pipeline")
    return results
