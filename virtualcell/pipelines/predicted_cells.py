"""The AnnData of predicted cells: names, obs columns, layers and provenance.

A predicted cell is a new cell, not its source: it is named ``<source name>-pred-<target>`` so
``ad.concat([real, predicted])`` has unique names, and ``obs`` keeps only what describes it:

```
obs[condition_key]                 the target (categorical, one category)
obs[condition_key + "_source"]     the condition it was predicted from (categorical, used values only)
obs["source_cell"]                 the name of the cell it was predicted from
obs[context_key], obs[covariate]   copied from the source cell (covariates: the values predicted for)
X                                  the central prediction [n, genes]; obsm["X_<key_added>"] its representation
layers                             with n_samples > 1: sample_mean, variance, q05 / q95 (the quantiles asked)
uns[key_added]                     pipeline components, the call, the training record
```
The source cell's other columns (QC metrics, barcodes, clusters) describe the measured cell, not
the prediction, and are left out; join them back on ``source_cell`` if needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import torch

from .intervals import predictive_quantiles

__all__ = ["predicted_obs", "predicted_anndata", "SOURCE_CELL"]

#: the obs column naming each predicted cell's source cell
SOURCE_CELL = "source_cell"


def _categorical(values: Any) -> pd.Categorical:
    values = pd.Series(values).astype(str).to_numpy()
    return pd.Categorical(values, categories=list(dict.fromkeys(values)))


def predicted_obs(adata: ad.AnnData, metadata: Mapping[str, Any], *, target: str, sources: Sequence[str],
                  covariates: Mapping[str, float] | None = None) -> pd.DataFrame:
    """``obs`` of the predicted cells (module doc): unique names, the target, source, context, covariates."""
    key = metadata["condition_key"]
    names = [f"{name}-pred-{target}" for name in map(str, adata.obs_names)]
    obs = pd.DataFrame(index=pd.Index(names, dtype=str))
    obs[key] = pd.Categorical([str(target)] * adata.n_obs, categories=[str(target)])
    obs[f"{key}_source"] = _categorical(sources)
    obs[SOURCE_CELL] = np.asarray(adata.obs_names, dtype=str)
    context_key = metadata.get("context_key")
    if context_key and context_key in adata.obs:
        obs[context_key] = _categorical(adata.obs[context_key])
    for covariate in metadata.get("covariate_keys") or ():
        if covariates and covariate in covariates:
            obs[covariate] = float(covariates[covariate])
        elif covariate in adata.obs:
            obs[covariate] = adata.obs[covariate].to_numpy()
    return obs


def predicted_anndata(obs: pd.DataFrame, genes: Sequence[str], decoded: torch.Tensor, latent: torch.Tensor,
                      *, central: torch.Tensor | None = None, quantiles: tuple[float, float] = (0.05, 0.95),
                      key_added: str = "virtualcell", provenance: Mapping[str, Any] | None = None) -> ad.AnnData:
    """The predicted cells: ``decoded`` samples [S, n, genes], ``latent`` [S, n, d] (their mean goes to
    ``obsm``); ``X`` is the mean of ``central`` [S, n, genes] (the model's own samples) or of ``decoded``."""
    mean = (decoded if central is None else central).mean(0).float().cpu().numpy()
    out = ad.AnnData(X=mean, obs=obs, var=pd.DataFrame(index=pd.Index(list(map(str, genes)), dtype=str)))
    out.obsm[f"X_{key_added}"] = latent.mean(0).float().cpu().numpy()
    if decoded.shape[0] > 1:
        lo, hi = predictive_quantiles(decoded.float(), quantiles, dim=0)
        out.layers["sample_mean"] = decoded.float().mean(0).cpu().numpy()
        out.layers["variance"] = decoded.float().var(0).cpu().numpy()
        out.layers[f"q{round(quantiles[0] * 100):02d}"] = lo.cpu().numpy()
        out.layers[f"q{round(quantiles[1] * 100):02d}"] = hi.cpu().numpy()
    out.uns[key_added] = dict(provenance or {})
    return out
