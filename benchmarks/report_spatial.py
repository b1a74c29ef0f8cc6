"""RESULTS.md section of the spatial-domain benchmarks (issue #14), built only from benchmarks/results/spatial/*.json.

    python benchmarks/report_spatial.py          # prints the markdown
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from markdown import markdown_table  # noqa: E402

FOLDER = Path(__file__).resolve().parent / "results" / "spatial"
METHOD_ORDER = ("graph", "pca", "neighbour-average")


def _load(task: str) -> dict | None:
    path = FOLDER / f"{task}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) and abs(v) < 1 else (f"{v:.2f}" if isinstance(v, float) else str(v))


def _table(header: list[str], rows: list[list]) -> str:
    return markdown_table(header, rows, _fmt)


def _machine(run: dict) -> str:
    m = run["machine"]
    return f"{m['cpu_count']} CPU cores, {m['torch_threads']} torch threads, torch {m['torch']}"


def _select(run: dict) -> str:
    rows = []
    for name, mean in sorted(run["mean_ari"].items(), key=lambda kv: -kv[1]):
        objective, layer = name.split("/")
        per = [r["ari"] for r in run["rows"] if r.get("objective") == objective and r.get("layer") == layer]
        rows.append([f"graph {objective} / {layer}", mean, min(per), max(per)])
    for method in ("pca", "neighbour-average"):
        per = [r["ari"] for r in run["rows"] if r["method"] == method]
        rows.append([method, statistics.mean(per), min(per), max(per)])
    return (f"`{run['command']}` ({_machine(run)}; {run['total_seconds']} s)\n\n"
            f"Selection on {len(run['slides'])} simulated slides (ARI against the simulated domains; no real labels). "
            f"Winner, made `GraphEncoder`'s default: **{run['winner']}**.\n\n"
            + _table(["configuration", "mean ARI", "min", "max"], rows))


def _real(run: dict) -> str:
    out = [f"`{run['command']}` ({_machine(run)}; {run['total_seconds']} s). Graph encoder (objective and layer from `select`): "
           f"`{json.dumps({k: run['encoder_defaults'][k] for k in ('objective', 'layer', 'n_layers', 'hidden', 'n_latent', 'max_steps')})}`; "
           "k = 10 neighbours; k-means with K = the number of annotated domains; mean ± sd over seeds."]
    goal = {}
    for dataset in dict.fromkeys(r["dataset"] for r in run["rows"]):
        rows = [r for r in run["rows"] if r["dataset"] == dataset]
        methods = list(dict.fromkeys(r["method"] for r in rows))
        table = []
        for method in methods:
            picked = [r for r in rows if r["method"] == method]
            ari = [r["ari"] for r in picked]
            nmi = [r["nmi"] for r in picked]
            sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0
            table.append([method if ":" not in method else f"graph, {method.split(':')[1]} (not selected; shown for transparency)", f"{statistics.mean(ari):.3f} ± {sd(ari):.3f}", f"{statistics.mean(nmi):.3f} ± {sd(nmi):.3f}",
                          statistics.mean(r["seconds"] for r in picked), len(picked)])
            goal.setdefault(dataset, {})[method] = statistics.mean(ari)
            goal[dataset][f"{method}:sd"] = sd(ari)
        first = rows[0]
        out.append(f"**{dataset}** ({first['n_cells']} cells, {first['n_domains']} annotated domains)\n\n"
                   + _table(["method", "ARI", "NMI", "seconds", "seeds"], table))
    verdicts = []
    for dataset, scores in goal.items():
        graph = scores.get("graph", float("nan"))
        best = max(scores.get("pca", float("-inf")), scores.get("neighbour-average", float("-inf")))
        verdicts.append(f"{dataset}: graph {graph:.3f} vs best baseline {best:.3f} -> "
                        f"{'met' if graph > best else 'not met'} (ratio {graph / best:.2f}; margin {graph - best:.3f} "
                        f"against the graph's seed-to-seed sd {scores.get('graph:sd', 0.0):.3f})" if best > 0 else
                        f"{dataset}: graph {graph:.3f}, baselines not positive")
    out.append("Goal (graph ARI above both baselines on both sets): " + "; ".join(verdicts) + ".")
    if run.get("niche"):
        out.append("**merfish** (2 sections; niche composition = shares of the 16 cell classes among each cell's 30 "
                   "nearest cells; ridge regression from the representation fitted on one section, R² on the other, "
                   "mean of both directions)\n\n"
                   + _table(["method", "niche R² (held-out section)", "seconds"],
                            [[r["method"], r["niche_r2"], r["seconds"]] for r in run["niche"]]))
    return "\n\n".join(out)


def _scale(run: dict) -> str:
    rows = []
    for r in run["rows"]:
        if "error" in r:
            rows.append([r["n_cells"], "failed: " + " ".join(r["error"]), "", "", "", "", r["wall_s"]])
        else:
            rows.append([f"{r['n_cells']:,}", r["graph_s"], r["fit_s"], r["encode_s"], r["peak_rss_gb"], r["input_gb"],
                         r["wall_s"]])
    return (f"`{run['command']}` ({_machine(run)}; {run['total_seconds']} s). Simulated slides, 50 genes, k = 10, "
            "the selected encoder (a fixed number of training steps, so training time does not grow with the slide); "
            "peak RSS of a fresh process over the whole run (includes Python, torch and PyG, about 0.5 GB, and "
            "simulating the slide as an AnnData).\n\n"
            + _table(["cells", "graph build s", "fit s", "encode s", "peak RSS GB", "expression GB", "wall s"], rows))


def render() -> str:
    """The markdown section (empty note when no run has been recorded)."""
    parts = ["## Spatial domains: the graph encoder beside PCA and neighbour-averaged expression (issue #14)",
             "Protocol (`benchmarks/bench_spatial.py`'s docstring): the encoder's objective and layer were chosen "
             "on simulated slides only; every other setting was fixed a priori; the real slides' labels were used "
             "only to score. Neighbour sampling is ours (exact k-hop blocks; PyG's `NeighborLoader` needs "
             "`pyg-lib` or `torch-sparse`, which PyPI does not carry)."]
    for task, render_task in (("select", _select), ("real", _real), ("scale", _scale)):
        run = _load(task)
        parts.append(f"### {task}\n\n" + (render_task(run) if run else "_no run recorded yet_"))
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    print(render())
