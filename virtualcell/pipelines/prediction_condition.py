"""What a prediction asks of the manipulator: each cell's source, target, context and covariates.

Each cell's source condition is read from the fitted condition column when the AnnData has it,
else ``source`` (default: the control label) is used for every cell. Cells whose source is
already the target are refused (:func:`prediction_condition`): predicting a stimulated cell
"under stimulation" would return an altered copy of a real cell, silently. Select the cells of
another condition first (``adata[adata.obs["condition"] != target]``; CLI ``--cells``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anndata as ad
import numpy as np
import torch

from ..component import Condition
from ..data.checks import DataError
from ..data.fields import condition_labels, covariate_tensors, make_condition
from ..data.vocabulary import Vocabulary

__all__ = ["prediction_condition", "source_labels"]


def source_labels(adata: ad.AnnData, metadata: Mapping[str, Any], source: str | None) -> np.ndarray:
    """Each cell's current condition [n] (strings): ``source`` when given, else the fitted condition column
    when ``adata`` has it, else the control label."""
    key = metadata["condition_key"]
    if source is None and key in adata.obs:
        return condition_labels(adata, key)
    return np.full(adata.n_obs, str(source or metadata["control"]), dtype=object)


def _refuse_target_cells(sources: np.ndarray, target: str, key: str, control: str, given: bool) -> None:
    already = sources == target
    if not already.any():
        return
    if given:
        raise DataError(f"source and target are both {target!r}: there is nothing to predict. Pass the cells' "
                        f"current condition as source (default: the {key!r} column, else {control!r}).")
    raise DataError(f"{int(already.sum())} of the {len(sources)} cells are already {target!r} (adata.obs[{key!r}]); "
                    f"predicting them under {target!r} would return altered copies of real {target!r} cells. Pass only "
                    f"cells of another condition, e.g. adata[adata.obs[{key!r}] != {target!r}] "
                    f"(CLI: --cells '...&{key}={control}').")


def prediction_condition(adata: ad.AnnData, metadata: Mapping[str, Any], conditions: Vocabulary, *, target: str,
                         source: str | None, covariates: Mapping[str, float] | None,
                         manipulator: Any) -> tuple[Condition, torch.Tensor | None]:
    """The manipulator's ``Condition`` for predicting ``adata``'s cells under ``target``, and each cell's
    fitted context id [n] (-1 for a context unknown to the fit; None without ``context_key``).

    The Condition's ``context`` is set only when every cell's context is known. Raises ``DataError``
    for an unknown target or source, cells already in ``target``, or a ``manipulator`` that needs
    contexts the cells lack.
    """
    target_id = conditions.id(target)
    sources = source_labels(adata, metadata, source)
    source_ids = conditions.encode(sources)
    _refuse_target_cells(sources.astype(str), str(target), metadata["condition_key"], metadata["control"],
                         given=source is not None)
    context_ids, effect_contexts = None, None
    context_key = metadata["context_key"]
    if context_key and context_key in adata.obs:
        known = Vocabulary(metadata["contexts"])
        ids = np.array([known.id(v) if v in known else -1 for v in adata.obs[context_key].astype(str)],
                       dtype=np.int64)
        effect_contexts = torch.as_tensor(ids)
        if (ids >= 0).all():
            context_ids = ids
    if manipulator.requires_context and context_ids is None:
        raise DataError(f"{type(manipulator).__name__} needs every cell's {context_key!r} among the fitted ones "
                        f"{metadata['contexts']}.")
    condition = make_condition(np.full(adata.n_obs, target_id), source_ids=source_ids, context_ids=context_ids,
                               covariates=covariate_tensors(adata, metadata["covariate_keys"], dict(covariates or {})))
    return condition, effect_contexts
