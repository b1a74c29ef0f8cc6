"""The representation benchmark: does a cell's identity survive a perturbation in the representation?

Protocol (``virtualcell benchmark represent``): preprocess every cell once (the evaluation protocol's (docs/evaluation.md) recipe
for ``kang_ifnb_full.h5ad``: ``normalize_total`` 1e4, ``log1p``, 2,000 HVGs on all cells; labels
with too few cells dropped); fit each encoder on the **control** cells only, and a
``label-decoder`` (calibrated) on their representations and labels; predict the labels of the
**stimulated** cells, which no model saw. Per encoder: accuracy, macro-F1, expected calibration
error of the transferred labels, kNN purity (share of each stimulated cell's ``k`` nearest
stimulated neighbours with its label), silhouette by label and by condition (all cells, a seeded
subsample; by label higher is better, by condition near 0 means the condition does not split the
cells), fit and encode seconds. Nothing is chosen by looking at the stimulated cells' labels.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import torch

from ..data.checks import DataError
from ..data.preprocess import Preprocessing
from ..execution import batched_apply, progress_bar, resolve_device, seed_everything
from . import report as reporting

__all__ = ["run_represent", "representation_metrics", "DEFAULT_ENCODERS", "FORMAT_VERSION"]

DEFAULT_ENCODERS = ("pca", "vae", "transformer")
FORMAT_VERSION = 1


def representation_metrics(z: np.ndarray, labels: np.ndarray, conditions: np.ndarray, query: np.ndarray,
                           predicted: np.ndarray, probabilities: np.ndarray, *, k: int = 15,
                           silhouette_cells: int = 4000, seed: int = 0) -> dict[str, float]:
    """Label-transfer and structure metrics of representations ``z`` [n, d].

    ``labels``, ``conditions`` [n] (strings); ``query`` [n] bool, the cells whose labels were
    predicted as ``predicted`` [n_query] with calibrated ``probabilities`` [n_query, classes].
    """
    from sklearn.metrics import accuracy_score, f1_score, silhouette_score
    from sklearn.neighbors import NearestNeighbors

    from ..instruments.decoders.labels import expected_calibration_error

    truth = labels[query]
    classes = sorted(set(labels))
    truth_ids = torch.as_tensor([classes.index(t) for t in truth])
    z_query = z[query]
    neighbours = NearestNeighbors(n_neighbors=min(k + 1, len(z_query))).fit(z_query)
    _, index = neighbours.kneighbors(z_query)
    purity = float((truth[index[:, 1:]] == truth[:, None]).mean())
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(z), size=min(silhouette_cells, len(z)), replace=False)
    return {
        "accuracy": float(accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, average="macro", labels=sorted(set(truth)))),
        "ece": expected_calibration_error(torch.as_tensor(probabilities), truth_ids),
        "mean_confidence": float(probabilities.max(1).mean()),
        "knn_purity": purity,
        "silhouette_cell_type": float(silhouette_score(z[rows], labels[rows])),
        "silhouette_condition": float(silhouette_score(z[rows], conditions[rows])),
    }


def _subsample(mask: np.ndarray, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    if limit is None or mask.sum() <= limit:
        return mask
    keep = np.zeros_like(mask)
    keep[rng.choice(np.flatnonzero(mask), size=limit, replace=False)] = True
    return keep


def run_represent(data: ad.AnnData | str | Path, *, encoders: Sequence[str] = DEFAULT_ENCODERS,
                  encoder_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
                  decoder_kwargs: Mapping[str, Any] | None = None, label_key: str = "cell_type_coarse",
                  condition_key: str = "condition", control: str = "control",
                  exclude_labels: Sequence[str] = ("Megakaryocyte", "Erythrocyte"), preprocess: Any = "kang-full",
                  max_cells: int | None = None, seed: int = 0, device: str = "cpu", progress: bool = True,
                  out: str | Path | None = None, command: str | None = None) -> dict[str, Any]:
    """Run the protocol of the module docstring; returns (and with ``out`` writes) the report as JSON.

    Args:
        encoders: registered encoder names, compared side by side on one preprocessing and split.
        encoder_kwargs: per encoder name, init arguments.
        max_cells: at most this many cells per condition (seeded subsample; None: all).
    """
    from ..pipelines.annotate import transfer_labels
    from ..pipelines.pipeline import resolve_component

    source = {"path": None, "sha256": None}
    if not isinstance(data, ad.AnnData):
        path = Path(data)
        if not path.is_file():
            raise FileNotFoundError(f"No dataset at {path}; pass an .h5ad file.")
        source = {"path": str(path.resolve()), "sha256": reporting.sha256_file(path)}
        data = ad.read_h5ad(path)
    for key in (label_key, condition_key):
        if key not in data.obs:
            raise DataError(f"obs column {key!r} not found; available: {list(data.obs.columns)}.")
    data = data[~data.obs[label_key].astype(str).isin(list(exclude_labels))].copy()
    conditions = data.obs[condition_key].astype(str).to_numpy()
    if not (conditions == control).any() or (conditions == control).all():
        raise DataError(f"{condition_key} must hold {control!r} cells and perturbed cells; found {sorted(set(conditions))}.")
    recipe = Preprocessing.from_spec(preprocess).fit(data)
    x_all = recipe.transform(data)
    rng = np.random.default_rng(seed)
    keep = _subsample(conditions == control, max_cells, rng) | _subsample(conditions != control, max_cells, rng)
    x_all, conditions = x_all[keep], conditions[keep]
    labels = data.obs[label_key].astype(str).to_numpy()[keep]
    reference, query = conditions == control, conditions != control
    target = resolve_device(device)
    x = torch.from_numpy(x_all).to(target)
    results: dict[str, Any] = {}
    for name in progress_bar(list(encoders), desc="encoders", enabled=progress):
        encoder = resolve_component({"name": name, **dict((encoder_kwargs or {}).get(name, {}))}, "encoder").to(target)
        seed_everything(seed)
        start = time.perf_counter()
        encoder.fit(x[torch.as_tensor(reference, device=target)], recipe.genes, seed=seed, progress=progress)
        fit_seconds = time.perf_counter() - start
        start = time.perf_counter()
        z = batched_apply(encoder.encode, x, batch_size=4096)
        encode_seconds = time.perf_counter() - start
        start = time.perf_counter()
        decoder, probabilities = transfer_labels(z[torch.as_tensor(reference, device=target)], labels[reference].tolist(),
                                                 z[torch.as_tensor(query, device=target)],
                                                 decoder={"name": "label-decoder", **dict(decoder_kwargs or {})},
                                                 seed=seed)
        label_seconds = time.perf_counter() - start
        probabilities = probabilities.float().cpu().numpy()
        classes = np.asarray(decoder.output_features)
        z_np = z.float().cpu().numpy()
        metrics = representation_metrics(z_np, labels, conditions, query, classes[probabilities.argmax(1)],
                                         probabilities, seed=seed)
        results[name] = {**metrics, "fit_seconds": fit_seconds, "encode_seconds": encode_seconds,
                         "label_decoder_seconds": label_seconds, "n_latent": int(z.shape[1]),
                         "encoder": {"config": encoder.config_dict(),
                                     "training": reporting.json_clean(getattr(encoder, "training_summary", {}))},
                         "calibration": reporting.json_clean(decoder.calibration)}
    report = {
        "format_version": FORMAT_VERSION, "task": "represent", "command": command, "dataset": source,
        "protocol": {"label_key": label_key, "condition_key": condition_key, "control": control,
                     "exclude_labels": list(exclude_labels), "preprocess": recipe.to_dict() | {"genes": None},
                     "n_genes": len(recipe.genes), "max_cells": max_cells,
                     "n_reference": int(reference.sum()), "n_query": int(query.sum()),
                     "classes": sorted(set(labels[reference]))},
        "seed": seed, "device": str(target), "results": results,
        "machine": reporting.machine_info(), "packages": reporting.package_versions(),
    }
    if out is not None:
        reporting.write_json(out, report)
    return report
