"""Evaluation: the metrics and plots of EVALUATION.md and the benchmark runner.

- :func:`run_benchmark` (``virtualcell benchmark oos|ood|pert``): splits x method + baselines -> a folder
  of ``results.json``, ``results.md``, predictions and plots;
- :mod:`.metrics` (``perturbation_metrics``, ``top_degs``), :mod:`.distribution` (energy distance, MMD,
  the out-of-sample PCA), :mod:`.discrimination` (PERT), :mod:`.scoring` (noise ceiling, calibration),
  :mod:`.celleval_export` (cell-eval's layout), :mod:`.plots`, :mod:`.splits`, :mod:`.report`.

Submodules are imported on first use so that ``import virtualcell.evaluate`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["run_benchmark", "oos_tasks", "pert_tasks", "Task", "metrics", "plots", "splits", "report", "benchmark"]

_LAZY = {"run_benchmark": "benchmark", "oos_tasks": "splits", "pert_tasks": "splits", "Task": "splits"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name in ("metrics", "plots", "splits", "report", "benchmark", "commands", "distribution", "discrimination",
                "scoring", "celleval_export"):
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'virtualcell.evaluate' has no attribute {name!r}")
