"""Benchmark reports: atomic file writing, machine and package facts, the markdown table."""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from ..io import atomic_write, json_clean, write_h5ad, write_json, write_text  # one place (re-exported)
from ..registry.hashing import sha256_file  # the package's one file hash (re-exported)

__all__ = [
    "atomic_write",
    "write_h5ad",
    "write_json",
    "write_text",
    "sha256_file",
    "machine_info",
    "package_versions",
    "source_revision",
    "json_clean",
    "markdown_report",
    "METRIC_ORDER",
]

PACKAGES = ("virtualcell", "torch", "numpy", "scipy", "pandas", "anndata", "scanpy", "scikit-learn",
            "diffusers", "matplotlib")

#: column order of the markdown tables (metrics of docs/evaluation.md, then timings)
METRIC_ORDER = ("r2_mean_all", "r2_mean_top100", "pearson_delta", "pearson_delta_top100", "de_overlap_top100",
                "edistance_ratio", "mmd_ratio", "std_ratio_top100", "r2_var_top100", "discrimination", "coverage90",
                "interval_width90", "mean_sqdist_ratio", "gene_corr_top100", "seconds_train", "seconds_predict")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """Cores, torch threads, GPU, memory, OS: what a timing needs beside it."""
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS / Windows
        usable = os.cpu_count()
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    memory_gb = None
    try:
        memory_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return {"cpu": _cpu_model(), "cpu_count": os.cpu_count(), "usable_cores": usable,
            "torch_threads": torch.get_num_threads(), "gpus": gpus, "memory_gb": memory_gb,
            "platform": platform.platform(), "python": platform.python_version()}


def source_revision(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The git commit of the virtualcell source tree (and whether it had uncommitted changes), if any."""
    import subprocess

    root = Path(path) if path is not None else Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return {}
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "virtualcell"],
                                cwd=root, capture_output=True, text=True, timeout=10)
        return {"git_commit": commit.stdout.strip(), "git_dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {}


def package_versions(packages: Sequence[str] = PACKAGES) -> dict[str, str]:
    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3f}"
    return str(value)


def _columns(results: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    seen: list[str] = []
    for per_context in results.values():
        for metrics in per_context.values():
            seen.extend(k for k, v in metrics.items() if k not in seen and isinstance(v, (int, float, type(None)))
                        and not k.startswith("n_"))
    ordered = [m for m in METRIC_ORDER if m in seen]
    return ordered + [m for m in seen if m not in ordered]


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_report(report: Mapping[str, Any]) -> str:
    """``results.md``: per context x method metrics, then their means over contexts."""
    results = report["results"]
    columns = _columns(results)
    methods = list(results)
    contexts = list(report["contexts"])
    unit = "target" if report["protocol"] == "pert" else "context"
    rows = [[context, method, *[results[method][context].get(c) for c in columns]]
            for context in contexts for method in methods if context in results[method]]
    means = [[method, report["means"][method].get("n_contexts"), *[report["means"][method].get(c) for c in columns]]
             for method in methods]
    dataset = report["dataset"]
    machine = report["machine"]
    method = report["method"]
    source = (f"`{dataset['path']}` (sha256 `{dataset['sha256'][:16]}…`)" if dataset.get("path") else
              f"in-memory AnnData (fingerprint `{str(dataset.get('fingerprint'))[:16]}…`)")
    parts = [f"# Benchmark {report['protocol'].upper()}: {method['label']}", "",
             f"- data: {source}, "
             f"{dataset['n_cells']} cells x {dataset['n_genes']} genes, preprocess `{dataset['preprocess']}`",
             "- method: " + ", ".join(f"{role} `{spec['name']}` `{json.dumps(spec['config'], sort_keys=True)}`"
                                        for role, spec in method["components"].items() if spec),
             f"- seed {report['seed']}; status {report['status']}; machine: {machine['usable_cores']} usable cores "
             f"({machine['cpu']}), {machine['torch_threads']} torch threads, GPU {machine['gpus'] or 'none'}",
             f"- virtualcell {report.get('packages', {}).get('virtualcell', '?')}"
             + (f", git {report['source']['git_commit'][:10]}{' + uncommitted changes' if report['source']['git_dirty'] else ''}"
                if report.get("source") else ""),
             "", f"## Per {unit}", "", _table([unit, "method", *columns], rows),
             "", f"## Mean over {unit}s", "", _table(["method", f"n_{unit}s", *columns], means), ""]
    if report.get("command"):
        parts[2:2] = [f"- command: `{report['command']}`"]
    return "\n".join(parts)
