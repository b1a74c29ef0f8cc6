"""Obs columns at the AnnData edge: validation, and strings -> ids -> ``Condition``."""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import numpy as np
import torch

from ..component import Condition
from .checks import DataError
from .vocabulary import Vocabulary

__all__ = ["require_obs", "condition_labels", "covariate_tensors", "make_condition"]


def require_obs(adata: ad.AnnData, key: str | None, *, role: str) -> None:
    """Error listing the available columns when ``key`` is not in ``adata.obs``."""
    if key is not None and key not in adata.obs:
        raise DataError(f"{role} key {key!r} is not a column of adata.obs; available columns: {list(adata.obs.columns)}.")


def condition_labels(adata: ad.AnnData, key: str) -> np.ndarray:
    require_obs(adata, key, role="condition")
    values = adata.obs[key]
    if values.isna().any():
        raise DataError(f"adata.obs[{key!r}] has {int(values.isna().sum())} missing values; label or drop those cells.")
    return values.astype(str).to_numpy()


def covariate_tensors(adata: ad.AnnData, keys: Sequence[str], overrides: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
    """Numeric obs columns (dose, time) -> float tensors [n]; ``overrides`` set a constant value."""
    out = {}
    for key in keys:
        if overrides and key in overrides:
            out[key] = torch.full((adata.n_obs,), float(overrides[key]))
            continue
        require_obs(adata, key, role="covariate")
        values = adata.obs[key]
        try:
            array = values.astype(float).to_numpy()
        except (TypeError, ValueError):
            raise DataError(f"covariate adata.obs[{key!r}] must be numeric (dose, time); got {values.dtype}.") from None
        if not np.all(np.isfinite(array)):
            raise DataError(f"covariate adata.obs[{key!r}] has NaN values; fill or drop them.")
        out[key] = torch.as_tensor(array, dtype=torch.float32)
    return out


def make_condition(target_ids: np.ndarray, *, source_ids: np.ndarray | None = None, context_ids: np.ndarray | None = None,
                   covariates: dict[str, torch.Tensor] | None = None) -> Condition:
    as_long = lambda v: None if v is None else torch.as_tensor(v, dtype=torch.long)
    return Condition(as_long(target_ids), as_long(source_ids), as_long(context_ids), dict(covariates or {}))


def context_vocabulary(adata: ad.AnnData, key: str) -> Vocabulary:
    require_obs(adata, key, role="context")
    values = adata.obs[key]
    if values.isna().any():
        raise DataError(f"adata.obs[{key!r}] has {int(values.isna().sum())} missing values; label or drop those cells.")
    return Vocabulary.from_values(values, what=f"{key} value")
