"""The benchmark's ``--manipulator auto``: :func:`.choose.select_pipeline` as a method of the runner.

``virtualcell benchmark oos|pert --manipulator auto`` builds the method with :func:`auto_method` and
fits it with :func:`fit_auto_method` on each task's training cells only (the outer held-out unit is
never an inner unit), so that the choice is judged on contexts it never saw (docs/selection.md).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import anndata as ad

from ..data.checks import DataError
from .candidates import parse_candidates
from .choose import select_pipeline

__all__ = ["AUTO_OPTIONS", "auto_method", "fit_auto_method", "fit_auto"]

AUTO_OPTIONS = frozenset({"candidates", "n_jobs", "max_cells", "max_epochs", "quick", "rule", "ensemble", "spread",
                          "min_cells", "n_top"})


def _auto_options(spec: Any, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    options = {} if isinstance(spec, str) else {k: v for k, v in dict(spec).items() if k != "name"}
    options.update(dict(extra or {}))
    unknown = sorted(set(options) - AUTO_OPTIONS)
    if unknown:
        raise ValueError(f"Unknown auto option(s) {unknown}; --manipulator auto takes {sorted(AUTO_OPTIONS)} "
                         "(e.g. --manipulator-option 'candidates=[\"mean-shift\",\"pca+latent-arithmetic\"]').")
    parse_candidates(options.get("candidates"))          # unknown names fail before any fit
    return options


def auto_method(spec: Any, kwargs: Mapping[str, Any] | None, sees_context: bool, method_class: type,
                label: str | None = None):
    """The benchmark method ``auto`` (``--manipulator auto``): a ``method_class`` whose manipulator spec is
    ``{"name": "auto", **options}`` (options: :data:`AUTO_OPTIONS`); fitted by :func:`fit_auto_method`."""
    options = _auto_options(spec, kwargs)
    candidates = [c.label for c in parse_candidates(options.get("candidates"))]
    description = {"encoder": None, "decoder": None,
                   "manipulator": {"name": "auto", "class": "select_pipeline",
                                   "config": {**options, "candidates": candidates}}}
    return method_class(label or "auto", None, {"name": "auto", **options}, None, sees_context, description)


def fit_auto_method(method, train: ad.AnnData, *, condition_key: str, control: str, context_key: str | None,
                    seed: int, progress: bool):
    """Fit ``auto`` on a benchmark task's training cells: ``(pipeline, seconds)`` (see :func:`fit_auto`).

    Folds: ``context_key`` (OOS); without it (PERT), the one other column the runner passes, the
    replicate column. OOD hides the context column from the method: refused.
    """
    others = [c for c in train.obs.columns if c not in (condition_key, context_key)]
    replicate_key = others[0] if context_key is None and len(others) == 1 else None
    start = time.perf_counter()
    pipeline = fit_auto(train, method.manipulator, condition_key=condition_key, control=control,
                        context_key=context_key, replicate_key=replicate_key, seed=seed, progress=progress)
    return pipeline, time.perf_counter() - start


def fit_auto(train: ad.AnnData, spec: Any = "auto", *, condition_key: str, control: str, context_key: str | None,
             replicate_key: str | None = None, seed: int = 0, progress: bool = True):
    """The benchmark's ``auto`` method: :func:`select_pipeline` on the outer training cells only.

    ``spec``: ``"auto"`` or ``{"name": "auto", **options}`` (:data:`AUTO_OPTIONS`). Folds:
    ``replicate_key`` when given (PERT), else ``context_key`` (OOS). Without either (OOD hides the
    context column from the method) there is nothing to fold over: refused. Returns the fitted
    pipeline (its ``metadata["selection"]`` holds the inner-CV table).
    """
    options = _auto_options(spec)
    if context_key is None and replicate_key is None:
        raise DataError("--manipulator auto selects by inner leave-one-context-out CV, which needs the context "
                        "column; the OOD protocol hides it from the method. Use oos (or pert), or name a method.")
    return select_pipeline(train, condition_key=condition_key, control=control, context_key=context_key,
                           replicate_key=replicate_key, seed=seed, progress=progress, **options).pipeline
