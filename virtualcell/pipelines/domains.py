"""``spatial_domains``: cells -> niche-aware representation -> K spatial domains (layers, regions).

Three representations, clustered the same way (k-means, ``n_init=10``, seeded):

- ``"graph"``: :class:`~virtualcell.representations.graph.GraphEncoder` (a GNN over the spatial
  neighbour graph, self-supervised) -> ``obsm["X_graph"]``;
- ``"pca"``: PCA of the standardised expression, without space (baseline) -> ``obsm["X_pca_expression"]``;
- ``"neighbour-average"``: BANKSY's idea, each cell's standardised expression concatenated with
  its neighbours' mean, weighted ``sqrt(1 - lambda)`` and ``sqrt(lambda)`` with BANKSY's published
  ``lambda = 0.8`` for domains, then PCA (baseline) -> ``obsm["X_neighbour_average"]``.

Why k-means: domains are compact regions of the representation; k-means is seeded, deterministic,
takes ``K`` directly (as the benchmarks and users give it) and scales to a million cells, where a
full-covariance Gaussian mixture in 32 dimensions is slower and less stable for the same use.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import scipy.sparse as sp
import torch

from ..data.align import align_matrix
from ..data.checks import DataError, looks_like_counts
from ..data.preprocess import get_matrix
from ..data.spatial import graph_of, graph_settings
from ..representations.pca import fit_pca

__all__ = ["spatial_domains", "METHODS", "REPRESENTATION_KEYS", "prepare_expression"]

METHODS = ("graph", "pca", "neighbour-average")
REPRESENTATION_KEYS = {"graph": "X_graph", "pca": "X_pca_expression", "neighbour-average": "X_neighbour_average"}
BANKSY_LAMBDA = 0.8  # BANKSY's recommended neighbourhood weight for domain segmentation (Singhal et al. 2024)
N_PCS = 20           # BANKSY and scanpy-style clustering both work on about 20 principal components


def prepare_expression(adata: ad.AnnData, *, layer: str | None = None, preprocess: str = "auto"
                       ) -> tuple[np.ndarray, str]:
    """Dense float32 [n, genes] expression and the recipe applied.

    ``"auto"``: ``normalize_total`` + ``log1p`` when the values are non-negative and not on a log
    scale (integer counts, whatever their maximum, or a maximum above 30: counts per volume); left as
    they are otherwise (already log-normalised, or scaled with negative values). ``"log1p"`` forces it, ``"none"`` skips it.
    """
    if preprocess not in ("auto", "log1p", "none"):
        raise ValueError(f"preprocess must be 'auto', 'log1p' or 'none'; got {preprocess!r}.")
    x = get_matrix(adata, layer)
    x = np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"The expression has {int((~np.isfinite(x)).sum())} NaN or infinite values; remove or impute them.")
    low, high = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    recipe = preprocess
    if preprocess == "auto":
        recipe = "log1p" if low >= 0 and (high > 30 or looks_like_counts(x)) else "none"
    if recipe == "log1p":
        if low < 0:
            raise DataError(f"preprocess='log1p' needs non-negative expression, but the minimum is {low:.3g}; "
                            "pass preprocess='none' for scaled data.")
        totals = x.sum(axis=1, keepdims=True)
        target = float(np.median(totals[totals > 0])) if (totals > 0).any() else 1.0   # scanpy's default target
        x = np.log1p(x / np.where(totals > 0, totals, 1.0) * target).astype(np.float32)
    return x, recipe


def _standardise(x: np.ndarray) -> np.ndarray:
    scale = x.std(axis=0)
    return np.clip((x - x.mean(axis=0)) / np.where(scale > 0, scale, 1.0), -10, 10).astype(np.float32)


def _pca(x: np.ndarray, seed: int) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    mean, components, _ = fit_pca(x, min(N_PCS, x.shape[1]), seed=seed)
    return ((x - mean) @ components.T).numpy()


def _kmeans(z: np.ndarray, n_domains: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=n_domains, n_init=10, random_state=seed).fit_predict(z.astype(np.float64))


def _graph_encoder(encoder: Any) -> tuple[Any, bool]:
    """(GraphEncoder, already trained?) from None / a dict of arguments / a fitted encoder / an artifact path."""
    from ..representations.graph import GraphEncoder

    if encoder is None or isinstance(encoder, dict):
        return GraphEncoder(**(encoder or {})), False
    if isinstance(encoder, GraphEncoder):
        encoder._check_fitted()
        return encoder, True
    if isinstance(encoder, (str, Path)):
        return GraphEncoder.load(encoder), True
    raise TypeError(f"encoder must be a dict of GraphEncoder arguments, a fitted GraphEncoder or the path of a saved "
                    f"one; got {type(encoder).__name__}.")


def spatial_domains(adata: ad.AnnData, *, spatial_key: str = "spatial", section_key: str | None = None,
                    n_domains: int = 7, method: str = "graph", n_neighbors: int = 10, radius: float | None = None,
                    layer: str | None = None, preprocess: str = "auto", encoder: Any = None,
                    key_added: str = "domain", copy: bool = False, seed: int = 0, progress: bool = True,
                    return_encoder: bool = False, deduplicate: bool = False) -> Any:
    """Find ``n_domains`` spatial domains; ``obs[key_added]`` (categorical), the representation in ``obsm``.

    Args:
        spatial_key: ``obsm`` key of the coordinates [n, 2 or 3].
        section_key: ``obs`` column naming each cell's section; neighbours are found within sections.
        n_domains: number of domains K (k-means clusters).
        method: ``"graph"`` (GNN encoder), ``"pca"`` or ``"neighbour-average"`` (baselines).
        n_neighbors, radius: the spatial graph (k nearest, or all within ``radius`` when given).
        layer, preprocess: where the expression is and how to normalise it (:func:`prepare_expression`).
        encoder: ``GraphEncoder`` arguments overriding its defaults (``{"objective": "dgi"}``: trained
            here), or a fitted ``GraphEncoder`` / the folder of a saved one (applied as it is, on a
            graph rebuilt from this slide's coordinates).
        copy: return a modified copy instead of writing into ``adata``.
        return_encoder: also return the graph encoder, ``(adata or None, encoder)``, to save or reuse.
        deduplicate: cells at duplicated coordinates (osmFISH has 527) are refused unless True: then the
            graph is built over the distinct positions and a repeated cell takes the neighbours of the
            first cell at its position, with a warning (:func:`virtualcell.data.spatial.graph_of`).

    Writes ``obs[key_added]``, ``obsm[REPRESENTATION_KEYS[method]]`` [n, d], squidpy's
    ``obsp["spatial_connectivities"]`` / ``obsp["spatial_distances"]`` and provenance in ``uns[key_added]``.
    """
    import pandas as pd

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}.")
    if int(n_domains) < 2:
        raise ValueError(f"n_domains must be >= 2; got {n_domains}.")
    if int(n_domains) > adata.n_obs:
        raise ValueError(f"n_domains={n_domains} is more than the {adata.n_obs} cells.")
    graph = graph_of(adata, spatial_key=spatial_key, section_key=section_key, n_neighbors=n_neighbors, radius=radius,
                     deduplicate=deduplicate)
    x, recipe = prepare_expression(adata, layer=layer, preprocess=preprocess)
    started = time.perf_counter()
    details: dict[str, Any] = {}
    if method == "graph":
        model, trained = _graph_encoder(encoder)
        edge_index = graph.edge_index()
        genes = [str(g) for g in adata.var_names]
        if trained:   # a saved encoder: its genes, in its order (missing genes are named)
            x = align_matrix(x, genes, model.input_features, what="the AnnData's var_names")
        else:
            model.fit(torch.from_numpy(x), genes, edge_index=edge_index, seed=seed, progress=progress)
        z = model.encode(torch.from_numpy(np.ascontiguousarray(x)), edge_index, progress=progress).cpu().numpy()
        details = {"encoder": model.config_json(), "training": model.training_summary, "pretrained": trained}
        if return_encoder:
            details["_model"] = model
    elif method == "pca":
        z = _pca(_standardise(x), seed)
    else:
        xs = _standardise(x)
        features = np.hstack([np.sqrt(1 - BANKSY_LAMBDA) * xs, np.sqrt(BANKSY_LAMBDA) * graph.neighbour_mean(xs)])
        z = _pca(features, seed)
        details = {"lambda": BANKSY_LAMBDA}
    encoded = time.perf_counter()
    labels = _kmeans(z, int(n_domains), seed)
    clustered = time.perf_counter()

    out = adata.copy() if copy else adata
    key = REPRESENTATION_KEYS[method]
    out.obsm[key] = z.astype(np.float32)
    out.obs[key_added] = pd.Categorical([str(v) for v in labels], categories=[str(v) for v in range(int(n_domains))])
    out.obsp["spatial_connectivities"] = graph.connectivities()
    out.obsp["spatial_distances"] = graph.distance_matrix()
    out.uns["spatial_neighbors"] = graph_settings(spatial_key, section_key, n_neighbors, radius)
    model = details.pop("_model", None)
    out.uns[key_added] = {
        "method": method, "representation_key": key, "n_domains": int(n_domains), "clustering": "kmeans(n_init=10)",
        "spatial_key": spatial_key, "section_key": section_key, "n_neighbors": None if radius else int(n_neighbors),
        "radius": radius, "deduplicate": bool(deduplicate), "preprocess": recipe, "layer": layer, "seed": int(seed), **details,
        "seconds": {"representation": round(encoded - started, 3), "clustering": round(clustered - encoded, 3)},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    result = out if copy else None
    return (result, model) if return_encoder else result
