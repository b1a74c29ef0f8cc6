"""The inner folds of :func:`virtualcell.selection.select_pipeline`, over the cells given to ``select``.

Those are the *training* cells of any outer benchmark; the outer held-out cells never reach this module.

- ``"context"`` (leave one context out, the OOS task): for each context ``c`` with at least
  ``min_cells`` control cells, train on every cell except ``c``'s perturbed ones; predict each
  perturbed condition of ``c`` with at least ``min_cells`` cells from ``c``'s control cells.
  Candidates see the context column. Needs >= 3 such contexts.
- ``"replicate"`` (leave one replicate out, the PERT task): for each replicate ``r``, train on the
  other replicates; predict each condition with at least ``min_cells`` cells in ``r`` (and cells in
  the training replicates) from ``r``'s control cells. Candidates never see the replicate column.
  Needs >= 2 replicates (each fold scores every target it holds).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..data.checks import DataError

__all__ = ["Unit", "Fold", "context_folds", "replicate_folds", "subsample_groups"]


@dataclasses.dataclass(frozen=True, eq=False)
class Unit:
    """One scored prediction: ``name`` (``context/target``), the target and masks [n] of C and S."""

    name: str
    fold: str
    target: str
    source: np.ndarray
    truth: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class Fold:
    """One inner fold: the training mask [n] and the units predicted from the model fitted on it."""

    name: str
    train: np.ndarray
    units: tuple[Unit, ...]


def _labels(obs: pd.DataFrame, key: str, role: str) -> np.ndarray:
    if key not in obs:
        raise DataError(f"{role} {key!r} is not a column of adata.obs; available: {list(obs.columns)}.")
    if obs[key].isna().any():
        raise DataError(f"adata.obs[{key!r}] has missing values; label or drop those cells before select.")
    return obs[key].astype(str).to_numpy()


def context_folds(obs: pd.DataFrame, *, context_key: str, condition_key: str, control: str,
                  min_cells: int = 10) -> list[Fold]:
    """Leave-one-context-out folds (see the module doc); raises DataError with fewer than 3 usable contexts."""
    context = _labels(obs, context_key, "context_key")
    condition = _labels(obs, condition_key, "condition_key")
    is_control = condition == control
    if not is_control.any():
        raise DataError(f"No cell has {condition_key} == {control!r}; pass control=<the label of unperturbed cells>.")
    folds = []
    for c in pd.unique(context):
        here = context == c
        source = here & is_control
        if source.sum() < min_cells:
            continue
        units = tuple(Unit(f"{c}/{t}", str(c), str(t), source, here & (condition == t))
                      for t in pd.unique(condition[here & ~is_control]) if (here & (condition == t)).sum() >= min_cells)
        if units:
            folds.append(Fold(str(c), ~(here & ~is_control), units))
    if len(folds) < 3:
        usable = [f.name for f in folds]
        raise DataError(
            f"Inner cross-validation needs at least 3 contexts with >= {min_cells} control and perturbed cells in "
            f"adata.obs[{context_key!r}]; found {len(folds)} ({usable}). With fewer, choose a pipeline a priori "
            "(e.g. virtualcell fit --encoder pca --manipulator latent-arithmetic), use another column with >= 3 "
            "values as the context (donor, batch), hold out replicates instead (replicate_key=...), or lower min_cells.")
    return folds


def replicate_folds(obs: pd.DataFrame, *, replicate_key: str, condition_key: str, control: str,
                    min_cells: int = 10) -> list[Fold]:
    """Leave-one-replicate-out folds (see the module doc); raises DataError with fewer than 2 usable replicates."""
    replicate = _labels(obs, replicate_key, "replicate_key")
    condition = _labels(obs, condition_key, "condition_key")
    is_control = condition == control
    folds = []
    for r in pd.unique(replicate):
        here = replicate == r
        source = here & is_control
        trained = set(condition[~here])
        if source.sum() < min_cells or control not in trained:
            continue
        units = tuple(Unit(f"{r}/{t}", str(r), str(t), source, here & (condition == t))
                      for t in sorted(set(condition[here & ~is_control]))
                      if t in trained and (here & (condition == t)).sum() >= min_cells)
        if units:
            folds.append(Fold(str(r), ~here, units))
    if len(folds) < 2:
        raise DataError(
            f"Leave-one-replicate-out needs at least 2 replicates in adata.obs[{replicate_key!r}] with >= {min_cells} "
            f"control cells and targets of >= {min_cells} cells; found {[f.name for f in folds]}. Lower min_cells, "
            "or select over >= 3 contexts (context_key=...) instead.")
    return folds


def subsample_groups(obs: pd.DataFrame, keys: Sequence[str], max_cells: int | None, seed: int) -> np.ndarray:
    """Row indices keeping at most ``max_cells`` random cells of each combination of ``keys`` (sorted)."""
    if max_cells is None:
        return np.arange(len(obs))
    rng = np.random.default_rng(seed)
    groups = obs[list(keys)].astype(str).agg("\x1f".join, axis=1).to_numpy()
    keep = []
    for g in pd.unique(groups):
        rows = np.flatnonzero(groups == g)
        keep.append(rows if len(rows) <= max_cells else rng.choice(rows, max_cells, replace=False))
    return np.sort(np.concatenate(keep))
