"""Gene networks as data: ``networkx`` graphs over genes, built from expression or read from edge lists.

Three sources, all aligned to a list of genes (the AnnData's ``var_names``) by name:

- :func:`coexpression_network`: each gene linked to its ``k`` partners of largest |Pearson r| over
  cells (meant for control cells, so that no perturbation's response shapes the graph);
- :func:`knn_network`: each gene linked to its ``k`` nearest genes (cosine) in a gene-embedding
  space, by default :func:`gene_embedding` (the genes' loadings in a PCA of the standardised cells);
- :func:`read_edge_list`: a TSV/CSV of gene pairs with an optional weight column (a STRING- or
  GO-derived file); genes outside the AnnData are dropped and counted (:class:`NetworkReport`).

Edges carry ``weight`` (non-negative: |r|, cosine similarity clipped at 0, or the file's weight).
Graphs are saved as JSON (``networkx.node_link_data``; never pickle) by :func:`save_network`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

from .checks import DataError

__all__ = ["NetworkReport", "coexpression_network", "gene_embedding", "knn_network", "read_edge_list",
           "build_network", "save_network", "load_network", "NETWORK_SOURCES"]

#: names accepted by :func:`build_network` besides the path of an edge list
NETWORK_SOURCES = ("coexpression", "knn", "none")


@dataclasses.dataclass
class NetworkReport:
    """How a network lines up with the genes: ``n_nodes``, ``n_edges``, and what was dropped."""

    source: str
    n_nodes: int
    n_edges: int
    dropped_genes: list[str] = dataclasses.field(default_factory=list)  # named by the source, not in the data
    n_dropped_edges: int = 0

    def summary(self) -> str:
        text = f"gene network from {self.source}: {self.n_nodes} genes, {self.n_edges} edges"
        if self.dropped_genes:
            text += (f"; dropped {len(self.dropped_genes)} gene(s) not in the data (e.g. {self.dropped_genes[:5]}) "
                     f"and {self.n_dropped_edges} edge(s) touching them")
        return text


def _dense(x: Any) -> np.ndarray:
    if hasattr(x, "toarray"):
        x = x.toarray()
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise DataError(f"expected a [cells, genes] matrix; got shape {x.shape}.")
    return x


def _check_genes(x: np.ndarray, genes: Sequence[str]) -> list[str]:
    genes = [str(g) for g in genes]
    if len(genes) != x.shape[1]:
        raise DataError(f"{len(genes)} gene names for a matrix with {x.shape[1]} columns.")
    if len(set(genes)) != len(genes):
        raise DataError("gene names are not unique; make var_names unique (adata.var_names_make_unique()).")
    return genes


def _top_k_graph(similarity: np.ndarray, genes: list[str], k: int, min_weight: float) -> nx.Graph:
    """Undirected graph linking each gene to its ``k`` most similar others (weight = similarity)."""
    graph = nx.Graph()
    graph.add_nodes_from(genes)
    sim = similarity.copy()
    np.fill_diagonal(sim, -np.inf)
    k = min(int(k), len(genes) - 1)
    if k <= 0:
        return graph
    partners = np.argsort(-sim, axis=1, kind="stable")[:, :k]           # [G, k]
    for i, row in enumerate(partners):
        for j in row:
            w = float(sim[i, j])
            if np.isfinite(w) and w > min_weight:
                graph.add_edge(genes[i], genes[int(j)], weight=max(w, graph.get_edge_data(genes[i], genes[int(j)],
                                                                                         {"weight": 0.0})["weight"]))
    return graph


def coexpression_network(x: Any, genes: Sequence[str], *, k: int = 10, min_abs_corr: float = 0.05) -> nx.Graph:
    """Each gene linked to its ``k`` partners of largest |Pearson r| over the cells of ``x`` [cells, genes].

    Genes constant over the cells have no correlation and stay isolated. Weight = |r|; edges with
    |r| <= ``min_abs_corr`` are left out.
    """
    x = _dense(x)
    genes = _check_genes(x, genes)
    if x.shape[0] < 3:
        raise DataError(f"co-expression needs at least 3 cells; got {x.shape[0]}.")
    centred = x - x.mean(0)
    norm = np.sqrt((centred ** 2).sum(0))
    varying = norm > 1e-12
    corr = np.zeros((x.shape[1], x.shape[1]))
    scaled = centred[:, varying] / norm[varying]
    corr[np.ix_(varying, varying)] = scaled.T @ scaled
    return _top_k_graph(np.abs(corr), genes, k, min_abs_corr)


def gene_embedding(x: Any, n_components: int = 16) -> np.ndarray:
    """Genes' loadings [genes, n_components] in a PCA of the standardised cells ``x`` [cells, genes].

    Each loading vector is scaled by its singular value, so genes that share variation are close.
    Deterministic (full SVD, signs fixed so that each component's largest loading is positive).
    """
    x = _dense(x)
    std = x.std(0)
    z = (x - x.mean(0)) / np.where(std > 1e-12, std, 1.0)
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    n = min(int(n_components), vt.shape[0])
    loadings = vt[:n].T * s[:n] / np.sqrt(max(x.shape[0] - 1, 1))     # [genes, n]
    signs = np.sign(loadings[np.abs(loadings).argmax(0), np.arange(n)])
    return loadings * np.where(signs == 0, 1.0, signs)


def knn_network(embedding: Any, genes: Sequence[str], *, k: int = 10) -> nx.Graph:
    """Each gene linked to its ``k`` nearest genes by cosine similarity of ``embedding`` [genes, e].

    Weight = cosine similarity (edges with similarity <= 0 are left out).
    """
    emb = _dense(embedding)
    if emb.shape[0] != len(genes):
        raise DataError(f"{len(genes)} gene names for an embedding of {emb.shape[0]} genes.")
    genes = [str(g) for g in genes]
    norm = np.linalg.norm(emb, axis=1, keepdims=True)
    unit = emb / np.where(norm > 1e-12, norm, 1.0)
    return _top_k_graph(unit @ unit.T, genes, k, 0.0)


def _read_table(path: Path) -> pd.DataFrame:
    sep = "," if path.suffix.lower() == ".csv" else "\t"
    try:
        table = pd.read_csv(path, sep=sep, comment="#")
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as error:
        raise DataError(f"{path} could not be read as a {'CSV' if sep == ',' else 'TSV'} edge list ({error}).") from None
    return table


def read_edge_list(path: str | Path, genes: Sequence[str], *, weight: str | None = None,
                   columns: tuple[str, str] | None = None, extra_nodes: Iterable[str] = ()) -> tuple[nx.Graph, NetworkReport]:
    """A gene network from a TSV (``.tsv``/``.txt``) or CSV (``.csv``) edge list, aligned to ``genes``.

    Args:
        path: the file; one row per edge, a header row naming the columns.
        genes: the genes to keep (the AnnData's); edges touching any other gene are dropped and counted.
        weight: the column of edge weights; None: ``weight`` if present, else the third column when it is
            numeric (e.g. STRING's ``combined_score``), else every weight 1. Negative weights -> absolute value.
        columns: the two gene columns (default: the first two columns of the file).
        extra_nodes: names kept though not in ``genes`` (e.g. targeted genes that were not measured).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"No edge list at {path}; pass a TSV/CSV file with two gene columns and a weight column.")
    table = _read_table(path)
    a, b = columns or tuple(table.columns[:2])
    for column in (a, b):
        if column not in table:
            raise DataError(f"{path} has no column {column!r}; its columns are {list(table.columns)}.")
    if weight is None:
        extra = [c for c in table.columns[2:3] if pd.api.types.is_numeric_dtype(table[c])]
        weight = "weight" if "weight" in table else (extra[0] if extra else None)
    elif weight not in table:
        raise DataError(f"{path} has no weight column {weight!r}; its columns are {list(table.columns)}.")
    if weight is not None:
        w = pd.to_numeric(table[weight], errors="coerce")
        if w.isna().any():
            raise DataError(f"{path}: column {weight!r} has {int(w.isna().sum())} non-numeric value(s); weights must be numbers.")
        w = w.abs().to_numpy(dtype=float)
    else:
        w = np.ones(len(table))
    keep = set(map(str, genes)) | set(map(str, extra_nodes))
    left, right = table[a].astype(str).to_numpy(), table[b].astype(str).to_numpy()
    ok = np.array([u in keep and v in keep for u, v in zip(left, right)], dtype=bool)
    dropped = sorted((set(left) | set(right)) - keep)
    graph = nx.Graph()
    graph.add_nodes_from(str(g) for g in genes)
    for u, v, wt in zip(left[ok], right[ok], w[ok]):
        if u != v:
            previous = graph.get_edge_data(u, v, {"weight": 0.0})["weight"]
            graph.add_edge(u, v, weight=max(float(wt), previous))
    if graph.number_of_edges() == 0:
        raise DataError(f"{path}: none of its {len(table)} edge(s) joins two genes of the data "
                        f"({len(dropped)} unknown gene name(s), e.g. {dropped[:5]}); check the gene identifiers "
                        "(symbols vs Ensembl ids) and the column choice.")
    report = NetworkReport(str(path), graph.number_of_nodes(), graph.number_of_edges(), dropped, int((~ok).sum()))
    return graph, report


def build_network(source: str, x: Any, genes: Sequence[str], *, k: int = 10, n_components: int = 16,
                  extra_nodes: Iterable[str] = ()) -> tuple[nx.Graph, NetworkReport]:
    """The network named by ``source`` over ``genes``: ``"coexpression"``, ``"knn"`` (in
    :func:`gene_embedding` space), ``"none"`` (nodes only, no edges) or the path of an edge list.
    ``x`` [cells, genes] are the cells it is built from (control cells)."""
    genes = [str(g) for g in genes]
    if source == "coexpression":
        graph = coexpression_network(x, genes, k=k)
    elif source == "knn":
        graph = knn_network(gene_embedding(x, n_components), genes, k=k)
    elif source == "none":
        graph = nx.Graph()
        graph.add_nodes_from(genes)
    elif os.sep in source or "/" in source or Path(source).suffix.lower() in (".tsv", ".csv", ".txt"):
        return read_edge_list(source, genes, extra_nodes=extra_nodes)
    else:
        raise DataError(f"Unknown gene network source {source!r}; use one of {NETWORK_SOURCES} or the path of a "
                        "TSV/CSV edge list.")
    return graph, NetworkReport(source, graph.number_of_nodes(), graph.number_of_edges())


def save_network(graph: nx.Graph, path: str | Path) -> Path:
    """Write ``graph`` as ``node_link_data`` JSON, atomically (a temporary file renamed into place)."""
    from ..io import write_text

    return write_text(path, json.dumps(nx.node_link_data(graph, edges="edges")))


def load_network(path: str | Path) -> nx.Graph:
    """Read a graph written by :func:`save_network`."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return nx.node_link_graph(data, edges="edges")
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise DataError(f"{path} is not a gene network saved by virtualcell (node_link JSON): {error}") from None
