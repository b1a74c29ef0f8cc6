"""Exact k-nearest neighbours streamed over a store, chunk by chunk, with memory bounded by a block.

For a block of stored rows ``X`` [c, d] and query rows ``Q`` [b, d], one BLAS call gives ``s =
||x||² - 2 q·x`` [b, c] (Euclidean; the query's own ``||q||²`` does not change the order) or ``s =
-q·x`` on unit vectors (cosine). Each query keeps its best ``k`` so far (rescored exactly) and a
threshold (its k-th best). In the first blocks every row goes through ``topk``; later only the few
entries under their row's threshold are picked out (one comparison pass) and merged, so the cost
approaches the matrix product. Memory: one stored chunk, one [b, c] block and the [m, k] results.
"""

from __future__ import annotations

import numpy as np

from .format import StoreError
from .reader import ChunkReader

__all__ = ["exact_knn", "check_query", "check_k", "TopK", "METRICS"]

METRICS = ("euclidean", "cosine")


def check_query(query, dim: int, metric: str) -> np.ndarray:
    """``query`` as float32 [m, dim]; NaN/inf, a wrong width and (cosine) zero vectors are refused."""
    if metric not in METRICS:
        raise StoreError(f"Unknown metric {metric!r}; choose one of {list(METRICS)}.")
    query = np.asarray(query, dtype=np.float32)
    query = query[None, :] if query.ndim == 1 else query
    if query.ndim != 2 or query.shape[1] != dim:
        raise StoreError(f"query must be [m, {dim}] (the store's dimension); got shape {query.shape}.")
    bad = ~np.isfinite(query).all(axis=1)
    if bad.any():
        raise StoreError(f"query rows {np.flatnonzero(bad)[:10].tolist()} contain NaN or inf; a distance to them "
                         "means nothing. Drop or impute those rows.")
    if metric == "cosine" and (np.linalg.norm(query, axis=1) == 0).any():
        raise StoreError("cosine distance is undefined for an all-zero query row; use metric='euclidean'.")
    return np.ascontiguousarray(query)


def check_k(k, n: int) -> int:
    """``k`` as an int in [1, n], or an error that says why not."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise StoreError(f"k must be a whole number of neighbours; got {k!r}.")
    if n == 0:
        raise StoreError("There are no stored cells to search (0 rows match).")
    if not 1 <= k <= n:
        raise StoreError(f"k = {k} neighbours asked for, but k must lie in [1, {n}] (the number of cells searched).")
    return int(k)


class TopK:
    """The best ``k`` row numbers of ``m`` queries (smallest exact score), merged block by block.

    Euclidean blocks rank by ``||x||² - 2 q·x`` (one BLAS call), which in float32 loses about
    ``1e-7 (||q||² + ||x||²)`` to cancellation; the candidates a block contributes are therefore
    rescored as exact ``||q - x||²`` before they are merged, and the pruning threshold has a margin.
    """

    def __init__(self, query, k: int, metric: str) -> None:
        import torch

        self.k, self.metric, self.query = k, metric, query
        self.query_norms = (query * query).sum(dim=1, keepdim=True) if metric == "euclidean" else None
        self.scores = torch.full((len(query), k), float("inf"))
        self.rows = torch.full((len(query), k), -1, dtype=torch.long)

    def merge(self, first_query: int, scores, x, row_numbers) -> None:
        """Merge a block ``scores`` [b, c] of stored rows ``x`` [c, d] numbered ``row_numbers`` [c]."""
        import torch

        part = slice(first_query, first_query + scores.shape[0])
        threshold = self.scores[part, -1:]
        if self.query_norms is not None:  # scores lack ||q||²; allow for float32 rounding
            norms = self.query_norms[part]
            threshold = threshold - norms + 1e-5 * (norms + threshold.clamp(max=1e30) + 1)
        if bool(torch.isinf(self.scores[part, -1]).any()):  # first blocks: each row's top k of the block
            self._top_of_rows(first_query, torch.arange(scores.shape[0]), scores, x, row_numbers)
            return
        # later blocks: few entries beat their row's threshold; one comparison pass picks them out
        rows, columns = (scores < threshold).nonzero(as_tuple=True)
        if rows.numel() == 0:
            return
        hits, counts = torch.unique_consecutive(rows, return_counts=True)
        if rows.numel() > 4 * self.k * len(hits):
            self._top_of_rows(first_query, hits, scores.index_select(0, hits), x, row_numbers)
            return
        slot = torch.repeat_interleave(torch.arange(len(hits)), counts)
        starts = torch.cumsum(counts, 0) - counts
        positions = (slot, torch.arange(rows.numel()) - starts[slot])
        self._merge(first_query, hits, rows, columns, x, row_numbers, width=int(counts.max()), positions=positions)

    def _top_of_rows(self, first_query, hits, block, x, row_numbers) -> None:
        import torch

        _, columns = torch.topk(block, min(self.k, block.shape[1]), dim=1, largest=False)
        self._merge(first_query, hits, hits[:, None].expand_as(columns).reshape(-1), columns.reshape(-1), x,
                    row_numbers, width=columns.shape[1], positions=None)

    def _merge(self, first_query, hits, rows, columns, x, row_numbers, *, width: int, positions) -> None:
        """Rescore candidates (block query ``rows`` [p], block ``columns`` [p]) exactly; keep each hit row's best k.

        ``positions`` (index into ``hits`` [p], slot [p]) places candidates in a padded [len(hits), width] table.
        """
        import torch

        q = self.query[first_query + rows]
        candidates = x[columns]
        if self.metric == "euclidean":
            exact = ((candidates - q) ** 2).sum(dim=1)
        else:
            exact = 1.0 - (candidates * q).sum(dim=1)
        if positions is None:  # every hit row has exactly ``width`` candidates, in order
            new_scores, new_rows = exact.view(len(hits), width), row_numbers[columns].view(len(hits), width)
        else:
            new_scores = torch.full((len(hits), width), float("inf"))
            new_rows = torch.full((len(hits), width), -1, dtype=torch.long)
            new_scores[positions] = exact
            new_rows[positions] = row_numbers[columns]
        target = hits + first_query
        merged_scores = torch.cat([self.scores[target], new_scores], dim=1)
        merged_rows = torch.cat([self.rows[target], new_rows], dim=1)
        best, order = torch.topk(merged_scores, self.k, dim=1, largest=False)
        self.scores[target] = best
        self.rows[target] = merged_rows.gather(1, order)


def exact_knn(reader: ChunkReader, query, k: int, *, metric: str = "euclidean", rows: np.ndarray | None = None,
              batch_size: int = 1024, chunk_rows: int = 32768) -> tuple[np.ndarray, np.ndarray]:
    """Exact neighbours of ``query`` [m, d] among ``reader``'s rows (all, or the sorted row numbers ``rows``).

    Returns (row numbers [m, k] int64, distances [m, k] float32), nearest first; cosine distance is
    ``1 - cos``. Memory: a chunk of ``chunk_rows`` stored rows and a [batch_size, chunk_rows] block.
    """
    import torch

    query = check_query(query, reader.dim, metric)
    k = check_k(k, reader.n_rows if rows is None else len(rows))
    q = torch.from_numpy(query)
    if metric == "cosine":
        q = torch.nn.functional.normalize(q, dim=1)
    top = TopK(q, k, metric)
    for numbers, block in reader.blocks(rows, block_rows=chunk_rows):
        x, numbers = torch.from_numpy(block), torch.from_numpy(numbers)
        if metric == "cosine":
            x = torch.nn.functional.normalize(x, dim=1)
        norms = (x * x).sum(dim=1)[None, :] if metric == "euclidean" else None
        for first in range(0, len(q), batch_size):
            qb = q[first:first + batch_size]
            scores = torch.addmm(norms, qb, x.T, alpha=-2.0) if norms is not None else -(qb @ x.T)
            top.merge(first, scores, x, numbers)
    scores, found = top.scores.numpy(), top.rows.numpy()
    distances = np.sqrt(np.maximum(scores, 0)) if metric == "euclidean" else scores
    order = np.argsort(distances, axis=1, kind="stable")
    return np.take_along_axis(found, order, 1), np.take_along_axis(distances, order, 1).astype(np.float32)
