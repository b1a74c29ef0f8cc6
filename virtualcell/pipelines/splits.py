"""Benchmark task definitions of docs/evaluation.md: which cells train a model and which are predicted.

A :class:`Task` is one held-out unit (a context for OOS / OOD, a targeted gene for PERT), given as
boolean masks over the cells of one AnnData's ``obs``:

- ``train``  [n] the cells the method may fit on;
- ``source`` [n] the cells it predicts from (``C``, the real control cells of the unit);
- ``truth``  [n] the real perturbed cells (``S``) its prediction ``P`` is compared with;
- ``reference`` [n] the cells the distribution metrics' PCA is fitted on: those outside the held-out
  unit (OOS / OOD: the other contexts, both conditions; PERT: the training replicates).

OOS and OOD share the same split (:func:`oos_tasks`); they differ only in whether the method is
shown the context column, which the runner decides. PERT (:func:`pert_tasks`) holds out one
replicate and trains one model for all targets (every task has the same ``train`` mask).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..data.checks import DataError

__all__ = ["Task", "oos_tasks", "pert_tasks", "context_order", "PROTOCOLS"]

PROTOCOLS = ("oos", "ood", "pert")


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """One held-out unit: ``name`` (context or target), ``target`` condition, and masks [n_cells]."""

    name: str
    target: str
    train: np.ndarray
    source: np.ndarray
    truth: np.ndarray
    reference: np.ndarray | None = None

    @property
    def sizes(self) -> dict[str, int]:
        return {"n_train": int(self.train.sum()), "n_source": int(self.source.sum()), "n_truth": int(self.truth.sum())}


def _column(obs: pd.DataFrame, key: str, role: str) -> pd.Series:
    if key not in obs:
        raise DataError(f"{role} key {key!r} is not a column of adata.obs; available columns: {list(obs.columns)}. "
                        f"Pass --{role}-key <column>.")
    values = obs[key]
    if values.isna().any():
        raise DataError(f"adata.obs[{key!r}] has {int(values.isna().sum())} missing values; label or drop those cells.")
    return values.astype(str)


def _require_label(values: pd.Series, label: str, key: str, option: str) -> None:
    if not (values == label).any():
        raise DataError(f"No cell has {key} == {label!r}; found {sorted(values.unique())[:20]}. Pass --{option} <label>.")


def context_order(obs: pd.DataFrame, key: str) -> list[str]:
    """Contexts in the column's categorical order (else first appearance), as strings."""
    column = obs[key]
    if isinstance(column.dtype, pd.CategoricalDtype):
        present = set(column.astype(str))
        return [str(c) for c in column.cat.categories if str(c) in present]
    return [str(c) for c in pd.unique(column.astype(str))]


def oos_tasks(obs: pd.DataFrame, *, context_key: str, condition_key: str = "condition", control: str = "control",
              target: str = "stimulated", contexts: Sequence[str] | None = None,
              exclude_contexts: Sequence[str] = (), min_cells: int = 2) -> list[Task]:
    """The scGen split: for each context ``c``, train on all cells but the ``target`` cells of ``c``.

    Args:
        obs: the cells' annotations (``adata.obs``).
        contexts: the contexts to hold out, in order; None: every context that has at least
            ``min_cells`` cells of both ``control`` and ``target``, minus ``exclude_contexts``.
        exclude_contexts: contexts never held out (their cells still train the other tasks).
        min_cells: fewest control and target cells a held-out context needs (2 for a Wilcoxon test).
    """
    condition = _column(obs, condition_key, "condition")
    context = _column(obs, context_key, "context")
    _require_label(condition, control, condition_key, "control")
    _require_label(condition, target, condition_key, "target")
    is_control = (condition == control).to_numpy()
    is_target = (condition == target).to_numpy()
    context_np = context.to_numpy()
    known = context_order(obs, context_key)

    def counts(c: str) -> tuple[int, int]:
        here = context_np == c
        return int((here & is_control).sum()), int((here & is_target).sum())

    unknown = sorted(set(exclude_contexts) - set(known))
    if unknown:
        raise DataError(f"exclude_contexts {unknown} are not values of adata.obs[{context_key!r}]; found {known}.")
    if contexts is None:
        chosen = [c for c in known if c not in set(exclude_contexts) and min(counts(c)) >= min_cells]
    else:
        chosen = [str(c) for c in contexts]
        unknown = [c for c in chosen if c not in known]
        if unknown:
            raise DataError(f"Contexts {unknown} are not values of adata.obs[{context_key!r}]; found {known}.")
        too_small = {c: counts(c) for c in chosen if min(counts(c)) < min_cells}
        if too_small:
            raise DataError(f"Contexts need >= {min_cells} {control!r} and {target!r} cells each; "
                            f"(control, target) counts: {too_small}. Leave them out of contexts.")
    if not chosen:
        raise DataError(f"No context of adata.obs[{context_key!r}] has >= {min_cells} cells of both {control!r} "
                        f"and {target!r}; nothing to hold out.")
    tasks = []
    for c in chosen:
        here = context_np == c
        tasks.append(Task(name=c, target=target, train=~(here & is_target), source=here & is_control,
                          truth=here & is_target, reference=~here))
    return tasks


def pert_tasks(obs: pd.DataFrame, *, condition_key: str = "condition", control: str = "control",
               replicate_key: str = "bio_rep", holdout: str = "rep_3", train_replicates: Sequence[str] | None = None,
               drop_conditions: Sequence[str] = ("ambiguous",), min_cells: int = 100,
               targets: Sequence[str] | None = None) -> list[Task]:
    """The Papalexi PERT split: train on ``train_replicates``, predict each target in ``holdout``.

    Every task trains on the same cells (all conditions of the training replicates, without
    ``drop_conditions``), so one model serves all targets. A target is evaluated when it has at
    least ``min_cells`` cells in ``holdout``; its ``source`` is ``holdout``'s control cells.

    Args:
        train_replicates: None: every replicate but ``holdout``.
        targets: evaluate only these (each must still pass ``min_cells``).
    """
    condition = _column(obs, condition_key, "condition")
    replicate = _column(obs, replicate_key, "replicate")
    _require_label(condition, control, condition_key, "control")
    _require_label(replicate, holdout, replicate_key, "holdout")
    replicates = sorted(replicate.unique())
    train_reps = [r for r in replicates if r != holdout] if train_replicates is None else [str(r) for r in train_replicates]
    unknown = sorted(set(train_reps) - set(replicates))
    if unknown or holdout in train_reps or not train_reps:
        raise DataError(f"train_replicates {train_reps} must be non-empty values of adata.obs[{replicate_key!r}] "
                        f"({replicates}) other than the holdout {holdout!r}.")
    kept = ~condition.isin(list(drop_conditions)).to_numpy()
    condition_np = condition.to_numpy()
    in_holdout = (replicate == holdout).to_numpy() & kept
    train = replicate.isin(train_reps).to_numpy() & kept
    source = in_holdout & (condition_np == control)
    if source.sum() < 2:
        raise DataError(f"Replicate {holdout!r} has {int(source.sum())} {control!r} cells; at least 2 are needed.")
    trained_on = set(condition_np[train])
    candidates = [str(t) for t in pd.unique(condition_np[in_holdout]) if t != control]
    if targets is not None:
        missing = sorted(set(map(str, targets)) - set(candidates))
        if missing:
            raise DataError(f"Targets {missing} have no cells in replicate {holdout!r}; found {sorted(candidates)}.")
        candidates = [str(t) for t in targets]
    chosen = sorted(t for t in candidates if (in_holdout & (condition_np == t)).sum() >= min_cells and t in trained_on)
    if not chosen:
        raise DataError(f"No target has >= {min_cells} cells in replicate {holdout!r} (and cells in {train_reps}); "
                        "lower min_cells.")
    return [Task(name=t, target=t, train=train, source=source, truth=in_holdout & (condition_np == t),
                 reference=train) for t in chosen]
