"""``annotate``: label transfer from a labelled reference to a query, with per-cell confidence.

Reference and query go through one preprocessing recipe (fitted on the reference) into one
encoder's representation (fitted on the reference unless it comes fitted); a ``label-decoder``
learns the reference's labels there, with temperature-scaled (calibrated) probabilities, and
labels the query:

```
obs[key_added]                      the transferred label (categorical, the reference's classes)
obs[key_added + "_confidence"]      its calibrated probability
obsm[key_added + "_probabilities"]  [n, classes] calibrated probabilities (classes in uns)
uns[key_added]                      classes, encoder and decoder configs, calibration, genes used
```
"""

from __future__ import annotations

import datetime
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import torch

from ..component import Decoder, Encoder
from ..data.checks import DataError
from ..data.preprocess import Preprocessing
from ..execution import batched_apply, resolve_device

__all__ = ["annotate", "transfer_labels", "resolve_encoder", "MIN_SHARED_GENES", "MAX_CLASSES"]

#: the least share of the reference's genes the query must have
MIN_SHARED_GENES = 0.5
#: a label column with more distinct values than this, or than half its cells, is refused (an identifier)
MAX_CLASSES = 1000


def resolve_encoder(spec: Any, *, token_table: str | Path | None = None) -> Encoder:
    """An encoder from a registered name, ``{"name": ..., **kwargs}``, an ``Encoder``, a saved artifact
    folder, or a local BERT checkpoint folder (``config.json`` + ``model.safetensors``: ``transformer``)."""
    from .pipeline import resolve_component

    if isinstance(spec, (str, Path)) and Path(spec).is_dir():
        folder = Path(spec)
        from ..representations.transformer.pretrained_checks import is_pretrained_folder

        if is_pretrained_folder(folder):   # Hugging Face layout (pickled weights get the conversion advice)
            from ..representations.transformer import TransformerEncoder

            return TransformerEncoder.from_pretrained(folder, token_table=token_table)
        from ..registry import load_component

        component = load_component(folder)
        if not isinstance(component, Encoder):
            raise TypeError(f"{folder} holds a {component.kind}, not an encoder.")
        return component
    if isinstance(spec, Path):  # not a folder: the artifact reader names what is missing
        from ..registry import load_component

        return load_component(spec)
    return resolve_component(spec, "encoder")


def _labels(reference: ad.AnnData, label_key: str) -> pd.Series:
    if label_key not in reference.obs:
        raise DataError(f"label_key {label_key!r} is not a column of reference.obs; available: {list(reference.obs.columns)}.")
    labels = reference.obs[label_key]
    if labels.isna().any():
        raise DataError(f"reference.obs[{label_key!r}] has {int(labels.isna().sum())} missing labels; drop those cells "
                        "(reference[reference.obs[label_key].notna()]) before transferring labels.")
    classes = labels.astype(str).unique()
    if len(classes) < 2:
        raise DataError(f"reference.obs[{label_key!r}] has one label ({list(classes)}): every query cell would get it "
                        "with confidence 1. Label transfer needs a reference with at least 2 labels; pass another "
                        "label_key (CLI: --label-key) or a reference with more cell types.")
    values = labels.to_numpy()
    continuous = pd.api.types.is_float_dtype(labels.dtype) and not np.allclose(values, np.round(values))
    if continuous or len(classes) > min(MAX_CLASSES, 0.5 * len(labels)):
        raise DataError(f"reference.obs[{label_key!r}] looks {'continuous' if continuous else 'like an identifier'} "
                        f"({len(classes)} distinct values in {len(labels)} cells, e.g. {list(classes[:3])}), not a set of "
                        "labels. Pass a categorical column of labels (cell types) as label_key, or bin the values "
                        "first (pd.cut).")
    return labels.astype(str)


def _shared_genes(genes: Sequence[str], query: ad.AnnData) -> list[str]:
    present = set(map(str, query.var_names))
    shared = [g for g in genes if g in present]
    missing = [g for g in genes if g not in present]
    if len(shared) < MIN_SHARED_GENES * max(len(genes), 1):
        raise DataError(f"The query has only {len(shared)} of the reference's {len(genes)} genes; {len(missing)} are "
                        f"missing, e.g. {missing[:20]}. Are both on the same gene-ID type (symbols vs Ensembl)?")
    if missing:
        warnings.warn(f"{len(missing)} of {len(genes)} reference genes are missing from the query and are left out, "
                      f"e.g. {missing[:20]}.", stacklevel=3)
    return shared


def transfer_labels(z_reference: torch.Tensor, labels: Sequence[str], z_query: torch.Tensor, *,
                    decoder: Any = "label-decoder", seed: int = 0, progress: bool = False
                    ) -> tuple[Decoder, torch.Tensor]:
    """Fit a label decoder on ``z_reference`` [n, d] with ``labels`` [n]; calibrated probabilities [m, classes] of ``z_query``."""
    from .pipeline import resolve_component

    classes = sorted(set(map(str, labels)))
    ids = torch.as_tensor(pd.Categorical(list(map(str, labels)), categories=classes).codes.astype(np.int64))
    model = resolve_component(decoder, "decoder")
    if model.output_type != "logits":
        raise TypeError(f"{type(model).__name__} decodes {model.output_type}, not class logits; use 'label-decoder'.")
    model.fit(z_reference, ids.to(z_reference.device), classes, seed=seed, progress=progress)
    return model, torch.softmax(model.decode(z_query), dim=1)


def annotate(query: ad.AnnData, reference: ad.AnnData, *, label_key: str, encoder: Any = "pca",
             decoder: Any = "label-decoder", preprocess: Any = None, layer: str | None = None,
             key_added: str | None = None, token_table: str | Path | None = None, seed: int = 0,
             device: str = "cpu", progress: bool = True, copy: bool = False) -> ad.AnnData | None:
    """Transfer ``reference.obs[label_key]`` to the cells of ``query`` (scanpy conventions).

    Args:
        label_key: the reference's label column.
        encoder: registered name (fitted on the reference), fitted ``Encoder``, artifact folder, or a
            local BERT checkpoint folder (``token_table`` names its gene-token table).
        decoder: the classifier (default ``"label-decoder"``), a name, dict or ``LabelDecoder``.
        preprocess: recipe applied to both (``None``: X is log-normalised; ``"log1p"`` for counts).
        key_added: where results go (default ``f"{label_key}_predicted"``; see the module docstring).
        progress: progress bars for training and encoding (a transformer takes minutes on CPU).
        copy: return an annotated copy of ``query`` instead of writing into it.

    The reference's labels must be categories: one label, a float column or one value per cell is refused.
    """
    labels = _labels(reference, label_key)
    key = key_added or f"{label_key}_predicted"
    model = resolve_encoder(encoder, token_table=token_table)
    recipe = Preprocessing.from_spec(preprocess)
    target = resolve_device(device)
    if model.is_fitted:
        if hasattr(model, "align_genes"):          # a vocabulary: use what both data sets measure
            both = [g for g in map(str, reference.var_names) if g in set(map(str, query.var_names))]
            model.align_genes(both)
        genes = model.input_features
    else:
        genes = _shared_genes(recipe.fit(reference, layer=layer).genes, query)
    x_ref = torch.from_numpy(recipe.transform(reference, layer=layer, genes=genes)).to(target)
    x_query = torch.from_numpy(recipe.transform(query, layer=layer, genes=genes)).to(target)
    model.to(target)
    if not model.is_fitted:
        model.fit(x_ref, genes, seed=seed, progress=progress)
    z_ref = batched_apply(model.encode, x_ref, batch_size=1024, progress=progress, desc="encode reference")
    z_query = batched_apply(model.encode, x_query, batch_size=1024, progress=progress, desc="encode query")
    classifier, probabilities = transfer_labels(z_ref, labels.tolist(), z_query, decoder=decoder, seed=seed,
                                                progress=progress)
    classes = list(classifier.output_features)
    probabilities = probabilities.float().cpu().numpy()
    out = query.copy() if copy else query
    out.obs[key] = pd.Categorical.from_codes(probabilities.argmax(1), categories=classes)
    out.obs[f"{key}_confidence"] = probabilities.max(1).astype(np.float32)
    out.obsm[f"{key}_probabilities"] = probabilities.astype(np.float32)
    out.uns[key] = {
        "label_key": label_key, "classes": classes, "n_reference_cells": int(reference.n_obs),
        "n_genes": len(genes), "encoder": {"component": type(model).__name__, "config": model.config_json()},
        "decoder": {"component": type(classifier).__name__, "config": classifier.config_json()},
        "calibration": _json(getattr(classifier, "calibration", {})), "preprocessing": str(recipe.to_dict() | {"genes": None}),
        "seed": seed, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    return out if copy else None


def _json(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if isinstance(v, (int, float, str))}
