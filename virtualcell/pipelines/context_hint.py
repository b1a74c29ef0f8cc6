"""A forgotten ``context_key``: warn when the data hold an obvious context column the fit would ignore.

Fitting without ``context_key`` hides the cell type from the model. That costs little when every
cell type was measured in every condition, but when one cell type's response is held out (the
usual out-of-sample question) the model must carry the other types' response across types
blind, and accuracy drops silently (Kang CD4T, ``latent-arithmetic``: R² 0.83 without
``context_key`` against 0.89 with it, below predicting no change).

The rule, :func:`context_candidates`: an obs column (other than the condition and covariate
columns) is an obvious context column when

1. it holds categories (categorical, string or boolean dtype; numeric columns are left alone:
   they are QC values or covariates far more often than labels);
2. it has between 2 and :data:`MAX_CONTEXTS` values, at least :data:`MIN_CELLS_PER_CONTEXT`
   cells per value on average (not a cell or barcode identifier);
3. it is crossed with the condition: some value has cells in the control and in a perturbed
   condition (a donor or sample column nested in the condition is not a context);
4. a response is held out by it: some value has control cells but none in a perturbed condition
   that another value has cells in.

:func:`warn_missing_context` warns (:class:`MissingContextWarning`) naming each such column, the
held-out responses and ``context_key=``. Silence it with ``warnings.filterwarnings("ignore",
category=MissingContextWarning)`` to fit without the context on purpose.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd

__all__ = ["MissingContextWarning", "context_candidates", "warn_missing_context", "MAX_CONTEXTS",
           "MIN_CELLS_PER_CONTEXT"]

#: most values an obvious context column has (cell types, tissues, cell lines)
MAX_CONTEXTS = 100
#: fewest cells per value, on average, of an obvious context column (fewer: an identifier)
MIN_CELLS_PER_CONTEXT = 5


class MissingContextWarning(UserWarning):
    """Fitted without ``context_key`` although a context column holds out a response (see the module doc)."""


def _is_label_column(values: pd.Series) -> bool:
    return (isinstance(values.dtype, pd.CategoricalDtype) or pd.api.types.is_object_dtype(values.dtype)
            or pd.api.types.is_string_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype))


def context_candidates(obs: pd.DataFrame, labels: np.ndarray, control: str, *,
                       exclude: Sequence[str] = ()) -> dict[str, list[tuple[str, str]]]:
    """Obvious context columns of ``obs`` and their held-out responses: ``{column: [(value, condition), ...]}``.

    ``labels`` [n] are the cells' conditions (strings), ``control`` the unperturbed label, ``exclude``
    the columns not to consider (the condition and covariate columns). See the module doc for the rule.
    """
    found: dict[str, list[tuple[str, str]]] = {}
    perturbed = sorted(set(labels) - {control})
    for column in obs.columns:
        if column in exclude or not _is_label_column(obs[column]):
            continue
        values = obs[column]
        known = values.notna().to_numpy()
        levels = pd.unique(values[known].astype(str))
        if not 2 <= len(levels) <= MAX_CONTEXTS or known.sum() < MIN_CELLS_PER_CONTEXT * len(levels):
            continue
        table = pd.crosstab(values[known].astype(str).to_numpy(), labels[known])
        if control not in table.columns:
            continue
        has = table > 0
        crossed = any((has[control] & has[p]).any() for p in perturbed if p in has.columns)
        if not crossed:
            continue
        held = [(str(level), str(p)) for p in perturbed if p in has.columns
                for level in has.index if has.loc[level, control] and not has.loc[level, p] and has[p].any()]
        if held:
            found[str(column)] = held
    return found


def warn_missing_context(adata: ad.AnnData, labels: np.ndarray, *, control: str, condition_key: str,
                         covariate_keys: Sequence[str] = (), stacklevel: int = 3) -> None:
    """Warn (:class:`MissingContextWarning`) when ``adata.obs`` has an obvious context column (module doc)."""
    found = context_candidates(adata.obs, labels, control, exclude=[condition_key, *covariate_keys])
    if not found:
        return
    column, held = next(iter(found.items()))
    examples = ", ".join(f"{column}={level!r} has no {p!r} cells" for level, p in held[:3])
    others = f" (so do {[c for c in found if c != column]})" if len(found) > 1 else ""
    warnings.warn(f"Fitting without context_key, but adata.obs[{column!r}] looks like a context column{others}: "
                  f"{examples}{' ...' if len(held) > 3 else ''}, so that response must be carried across {column} "
                  f"values the model cannot see, which silently costs accuracy. Pass context_key={column!r} "
                  f"(CLI: --context-key {column}); to fit without it on purpose, filter MissingContextWarning.",
                  MissingContextWarning, stacklevel=stacklevel)
