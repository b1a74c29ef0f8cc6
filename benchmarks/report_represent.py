"""RESULTS.md section of issue #13 (representations), built only from benchmarks/results/represent/*.json
(and, for the VAE's latent arithmetic, the harness's benchmarks/results/harness/valid-oos-vae.json).

    python benchmarks/report_represent.py          # prints the markdown

Every table is headed by the exact command that produced its numbers (recorded in the JSON).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from markdown import markdown_table  # noqa: E402

HERE = Path(__file__).resolve().parent
FOLDER = HERE / "results" / "represent"
HARNESS_VAE = HERE / "results" / "harness" / "valid-oos-vae.json"
REPRESENT_COLUMNS = ("accuracy", "macro_f1", "ece", "mean_confidence", "knn_purity", "silhouette_cell_type",
                     "silhouette_condition", "n_latent", "fit_seconds", "encode_seconds")
OOS_COLUMNS = ("r2_mean_all", "r2_mean_top100", "pearson_delta", "pearson_delta_top100", "edistance_ratio",
               "mmd_ratio", "std_ratio_top100", "seconds_train")


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _machine(report: dict) -> str:
    m = report.get("machine", {})
    return f"{m.get('usable_cores')} usable cores ({m.get('cpu')}), {m.get('torch_threads')} torch threads, GPU {m.get('gpus') or 'none'}"


def _represent(report: dict) -> str:
    results, protocol = report["results"], report["protocol"]
    rows = [[name, *[m.get(c) for c in REPRESENT_COLUMNS]] for name, m in results.items()]
    lines = ["### Label transfer across the perturbation (Kang full: fit on control, predict stimulated)", "",
             f"`{report['command']}`", "",
             f"{protocol['n_reference']} control cells (reference) and {protocol['n_query']} stimulated cells (query), "
             f"{protocol['n_genes']} genes, labels `{protocol['label_key']}` ({len(protocol['classes'])} classes, "
             f"without {', '.join(protocol['exclude_labels'])}); at most {protocol['max_cells']} cells per condition; "
             f"seed {report['seed']}; {_machine(report)}.", "",
             markdown_table(["encoder", *REPRESENT_COLUMNS], rows)]
    if "transformer" in results:
        baselines = {k: results[k]["macro_f1"] for k in ("pca", "vae") if k in results}
        if baselines:
            best = max(baselines, key=baselines.get)
            ours = results["transformer"]["macro_f1"]
            verdict = "met" if ours >= baselines[best] else "not met"
            lines += ["", f"Goal (transformer macro-F1 >= the better of PCA and VAE): **{verdict}**: transformer "
                          f"{ours:.3f} vs {best} {baselines[best]:.3f} (difference {ours - baselines[best]:+.3f})."]
    return "\n".join(lines)


def _throughput(report: dict) -> str:
    rows = [[name, r["n_cells"], r["config"]["max_tokens"], r["config"]["hidden_size"], r["config"]["num_layers"],
             r["cells_per_second"], r["encode_cells_per_second"], r["peak_over_before_mb"], r["peak_rss_mb"]]
            for name, r in report["runs"].items()]
    genes = report["expressed_genes_per_cell"]
    return "\n".join([
        "### Transformer pretraining throughput and memory (CPU)", "",
        f"`{report['command']}`", "",
        f"One epoch on {report['n_cells']} Kang control cells (expressed HVGs per cell: median {genes['median']:.0f}, "
        f"90th percentile {genes['p90']:.0f}), each configuration in a fresh process; {_machine(report)}. "
        "Peak memory is the process's peak resident memory minus its resident memory just before `fit`.", "",
        markdown_table(["configuration", "cells", "tokens", "hidden", "layers", "train cells/s", "encode cells/s",
                "peak over before fit (MB)", "peak RSS (MB)"], rows)])


def _select(report: dict) -> str:
    rows = [[name, json.dumps(c["options"]), c["macro_f1"], c["seconds"]] for name, c in report["candidates"].items()]
    return "\n".join([
        "### Transformer settings chosen on control cells only", "",
        f"`{report['command']}`", "",
        f"{report['protocol']}; {_machine(report)}. Winner: **{report['winner']}** (used by the runs below "
        "whose commands carry its options). The stimulated cells are not read.", "",
        markdown_table(["candidate", "options", "macro-F1 (control half)", "seconds"], rows)])


def _oos_rows(report: dict, labels: list[str]) -> list[list[Any]]:
    return [[label, *[report["means"][label].get(c) for c in OOS_COLUMNS]] for label in labels if label in report["means"]]


def _oos(transformer: dict, vae: dict | None) -> str:
    method = transformer["method"]["label"]
    lines = ["### Latent arithmetic on the transformer's representation (Kang valid, OOS, metrics v2)", "",
             f"`{transformer['command']}`", "",
             f"Means over {len(transformer['contexts'])} held-out cell types; seed {transformer['seed']}; "
             f"{_machine(transformer)}.", "",
             markdown_table(["method", *OOS_COLUMNS], _oos_rows(transformer, [method, "mean-shift", "control", "noise-ceiling"]))]
    if vae is not None:
        vae_label = vae["method"]["label"]
        lines += ["", "The VAE's latent arithmetic, same protocol (the harness's run):", "", f"`{vae['command']}`", "",
                  markdown_table(["method", *OOS_COLUMNS], _oos_rows(vae, [vae_label, "mean-shift"]))]
    ours, shift = transformer["means"][method]["pearson_delta"], transformer["means"]["mean-shift"]["pearson_delta"]
    per = transformer["results"]
    wins = sum(per[method][c]["pearson_delta"] > per["mean-shift"][c]["pearson_delta"] for c in transformer["contexts"])
    verdict = "met" if ours > shift else "not met"
    lines += ["", f"Goal (latent arithmetic on the transformer's UR beats mean-shift on pearson_delta): **{verdict}**: "
                  f"{ours:.3f} vs {shift:.3f} on the mean; better on {wins} of {len(transformer['contexts'])} cell types."]
    if vae is not None:
        vae_label = vae["method"]["label"]
        lines[-1] += f" The VAE's latent arithmetic: {vae['means'][vae_label]['pearson_delta']:.3f}."
    return "\n".join(lines)


def render() -> str:
    """The markdown section (empty string when no run has been recorded)."""
    parts = []
    chosen = _load(FOLDER / "select_controls.json")
    if chosen:
        parts.append(_select(chosen))
    represent = _load(FOLDER / "kang_full.json")
    if represent:
        parts.append(_represent(represent))
    throughput = _load(FOLDER / "throughput.json")
    if throughput:
        parts.append(_throughput(throughput))
    oos = _load(FOLDER / "valid_oos_transformer.json")
    if oos:
        parts.append(_oos(oos, _load(HARNESS_VAE)))
    if not parts:
        return ""
    return "\n\n".join(["## Representations: the gene-token transformer beside PCA and the VAE (issue #13)",
                        *parts]) + "\n"


if __name__ == "__main__":
    print(render())
