"""What ``PerturbationPipeline.fit`` reads from ``obs``: the condition and context vocabularies, checked.

Refused: a control label that is absent, a single condition, contexts without control cells
(their response cannot be anchored). Warned: a condition with fewer than
:data:`MIN_CONDITION_CELLS` cells (:class:`FewCellsWarning`: its response is estimated from
noise), and fitting without ``context_key`` when an obvious context column holds a response out
(:mod:`virtualcell.pipelines.context_hint`).

From disk (``categorical=True``) the cells' conditions are a ``pandas.Categorical`` (codes: 1 byte a cell
for up to 127 conditions) rather than one string per cell, and :func:`encode_labels` maps them to ids
per category: the same ids, a fraction of the memory for millions of cells.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
import torch

from ..data.checks import DataError
from ..component import Condition
from ..data.fields import condition_labels, context_vocabulary, covariate_tensors, make_condition, require_obs
from ..data.vocabulary import Vocabulary
from .context_hint import warn_missing_context

__all__ = ["FewCellsWarning", "MIN_CONDITION_CELLS", "training_labels", "extend_conditions", "fit_targets",
           "label_categories", "encode_labels"]

#: a condition with fewer cells than this is fitted with a :class:`FewCellsWarning`
MIN_CONDITION_CELLS = 3


class FewCellsWarning(UserWarning):
    """A condition is fitted from fewer than :data:`MIN_CONDITION_CELLS` cells."""


def training_labels(adata: ad.AnnData, *, condition_key: str, control: str, context_key: str | None,
                    covariate_keys: Sequence[str] = (), categorical: bool = False
                    ) -> tuple[np.ndarray | pd.Categorical, Vocabulary, Vocabulary | None]:
    """Each cell's condition [n] (strings; a ``pd.Categorical`` with ``categorical``), the condition vocabulary
    (control first) and the contexts (or None). ``adata``: anything with an AnnData's ``obs``."""
    if categorical:
        require_obs(adata, condition_key, role="condition")
        labels = label_categories(adata.obs[condition_key])
        if (labels.codes < 0).any():
            raise DataError(f"adata.obs[{condition_key!r}] has {int((labels.codes < 0).sum())} missing values; "
                            "label or drop those cells.")
    else:
        labels = condition_labels(adata, condition_key)
    conditions = Vocabulary.from_values(adata.obs[condition_key], first=[control], what=f"{condition_key} value")
    if control not in conditions:
        raise DataError(f"Control label {control!r} is not in adata.obs[{condition_key!r}]; "
                        f"found {conditions.labels}. Pass control=<the label of unperturbed cells>.")
    if len(conditions) < 2:
        raise DataError(f"adata.obs[{condition_key!r}] has only {conditions.labels}; fitting needs control and "
                        "at least one perturbed condition.")
    few = {str(v): int(c) for v, c in zip(*_counts(labels)) if c < MIN_CONDITION_CELLS}
    if few:
        warnings.warn(f"Condition(s) {few} of adata.obs[{condition_key!r}] have fewer than {MIN_CONDITION_CELLS} "
                      "cells (cells per condition): their response is estimated from so few cells that it is mostly "
                      "noise. Drop them, or measure more cells.", FewCellsWarning, stacklevel=3)
    contexts = context_vocabulary(adata, context_key) if context_key else None
    if contexts is not None:
        has_control = _present(adata.obs[context_key], np.asarray(labels == control))
        orphans = [c for c in contexts.labels if c not in has_control]
        if orphans:
            raise DataError(f"{context_key} value(s) {orphans} have no {control!r} cells, so their response cannot "
                            "be anchored. Drop those cells, fix the labels, or fit without context_key.")
    else:
        warn_missing_context(adata, np.asarray(labels), control=control, condition_key=condition_key,
                             covariate_keys=covariate_keys, stacklevel=4)
    return labels, conditions, contexts


def _present(values: pd.Series, mask: np.ndarray) -> set[str]:
    """The labels of ``values`` [n] at the cells ``mask`` [n], as strings (categorical: from the codes, no
    string a cell)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = np.unique(values.cat.codes.to_numpy()[mask])
        return {str(values.cat.categories[c]) for c in codes[codes >= 0]}
    return set(values[mask].astype(str).unique())


def _counts(labels: np.ndarray | pd.Categorical) -> tuple[np.ndarray, np.ndarray]:
    """The labels present, sorted, and their numbers of cells (``np.unique``'s, without strings per cell)."""
    if not isinstance(labels, pd.Categorical):
        return np.unique(labels, return_counts=True)
    counts = np.bincount(labels.codes, minlength=len(labels.categories))
    pairs = sorted((str(c), int(n)) for c, n in zip(labels.categories, counts) if n)
    return np.array([v for v, _ in pairs]), np.array([n for _, n in pairs])


def label_categories(values: pd.Series) -> pd.Categorical:
    """An obs column [n] as a ``pd.Categorical`` whose categories are strings (missing values: code -1)."""
    labels = pd.Categorical(values)
    names = [str(c) for c in labels.categories]
    if len(set(names)) < len(names):    # two categories print the same (1 and "1"): factorise their strings
        return pd.Categorical(values.astype(str).where(values.notna()))
    return labels.rename_categories(names)


def encode_labels(vocabulary: Vocabulary, values: np.ndarray | pd.Series | pd.Categorical) -> np.ndarray:
    """``vocabulary.encode(values)`` (ids [n], int64); categorical values are encoded once per category."""
    labels = values.array if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype) else values
    if not isinstance(labels, pd.Categorical) or (labels.codes < 0).any():
        return vocabulary.encode(values)
    present = np.bincount(labels.codes, minlength=len(labels.categories)) > 0
    table = np.full(len(labels.categories), -1, dtype=np.int64)
    table[present] = vocabulary.encode(labels.categories[present])
    return table[labels.codes]


def extend_conditions(conditions: Vocabulary, labels: np.ndarray, manipulator, extra: Sequence[str], *,
                      x: torch.Tensor, z: torch.Tensor, genes: Sequence[str]) -> Vocabulary:
    """``conditions`` plus ``extra`` labels without cells, then whatever the manipulator's
    ``prepare_conditions`` adds (observed labels kept first and in order); ``x`` [n, genes], ``z`` [n, d]."""
    if extra:
        conditions = Vocabulary(conditions.labels + [c for c in map(str, extra) if c not in conditions],
                                what=conditions.what)
    named = manipulator.prepare_conditions(conditions.labels, x=x, z=z, genes=list(genes),   # default: unchanged
                                           condition_ids=torch.as_tensor(encode_labels(conditions, labels), device=x.device))
    if list(named[: len(conditions)]) != conditions.labels:
        raise ValueError(f"{type(manipulator).__name__}.prepare_conditions must keep the observed labels "
                         "first and in order.")
    return Vocabulary(named, what=conditions.what)


def fit_targets(pipe, labels: np.ndarray, conditions: Vocabulary, contexts: Vocabulary | None, obs: ad.AnnData, *,
                context_key: str | None, covariate_keys: Sequence[str], extra: Sequence[str], x: torch.Tensor,
                z: torch.Tensor, genes: Sequence[str]) -> tuple[Vocabulary, np.ndarray, np.ndarray | None, Condition]:
    """What the manipulator is fitted on, after refusing a combination of ``pipe``'s parts that cannot work.

    ``x`` [m, genes] / ``z`` [m, d] are (a sample of) the training cells; ``labels`` [n] and ``obs``
    (an AnnData whose ``obs`` holds the contexts and covariates) cover all n cells. Returns the
    conditions (extended as :func:`extend_conditions` says), each cell's condition id [n] and context
    id [n] (None without contexts), and the :class:`Condition` on ``pipe.device``.
    """
    from .compatibility import check_combination

    check_combination(pipe.encoder, pipe.manipulator, pipe.decoder, x, z)   # refuses what cannot work
    conditions = extend_conditions(conditions, labels, pipe.manipulator, extra, x=x, z=z, genes=genes)
    condition_ids = encode_labels(conditions, labels)
    context_ids = encode_labels(contexts, obs.obs[context_key]) if contexts else None
    target = make_condition(condition_ids, context_ids=context_ids,
                            covariates=covariate_tensors(obs, covariate_keys)).to(pipe.device)
    return conditions, condition_ids, context_ids, target
