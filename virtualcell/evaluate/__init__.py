"""Evaluation: the benchmark harness of docs/evaluation.md.

- :func:`run_benchmark` (``virtualcell benchmark oos|ood|pert``): splits x method + baselines -> a folder
  of ``results.json``, ``results.md``, predictions and plots (:mod:`.benchmark`, :mod:`.benchmark_run`);
- :mod:`.pert_unseen` (leave one target out), :mod:`.represent` (encoders), :mod:`.celleval_export`
  (cell-eval's layout), :mod:`.plots`, :mod:`.report`, :mod:`.outputs`.

The metrics live in :mod:`virtualcell.metrics`, the task definitions (:class:`Task`, :func:`oos_tasks`,
:func:`pert_tasks`) in :mod:`virtualcell.pipelines.splits` and the one held-out loop in
:mod:`virtualcell.pipelines.holdout`; ``virtualcell.evaluate.{metrics,distribution,discrimination,
calibration,scoring,splits}`` are deprecated re-exports. Submodules are imported on first use so that
``import virtualcell.evaluate`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["run_benchmark", "run_pert_unseen", "oos_tasks", "pert_tasks", "Task", "plots", "report", "benchmark"]

_LAZY = {"run_benchmark": ".benchmark", "run_pert_unseen": ".pert_unseen", "oos_tasks": "..pipelines.splits",
         "pert_tasks": "..pipelines.splits", "Task": "..pipelines.splits"}
_MODULES = ("metrics", "plots", "splits", "report", "benchmark", "distribution", "discrimination", "scoring",
            "calibration", "celleval_export", "pert_unseen", "represent", "outputs")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'virtualcell.evaluate' has no attribute {name!r}")
