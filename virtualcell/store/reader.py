"""Reading one key's committed rows: the small interface the search algorithms take.

:class:`ChunkReader` wraps a key's ``values`` array and one :class:`~.format.Snapshot`, so the exact
and approximate neighbour searches (:mod:`.knn`, :mod:`.ann`) depend on this reader only, not on the
store that made it: ``EmbeddingStore.reader(key)`` gives one; a test can build one over any array.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from .format import Snapshot, StoreError

__all__ = ["ChunkReader"]


class ChunkReader:
    """The committed rows [n_rows, dim] of one key, read a chunk or a list of rows at a time.

    ``array`` is any 2-d array-like sliceable by rows (a zarr array; a numpy array in tests);
    ``state`` says how many of its rows are committed.
    """

    def __init__(self, array: Any, state: Snapshot) -> None:
        self.array, self.state = array, state

    @property
    def n_rows(self) -> int:
        return self.state.n_rows

    @property
    def dim(self) -> int:
        return self.state.dim

    def chunks(self, rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, values[start:start + rows])`` blocks [<= rows, d] over the committed rows."""
        step = max(int(rows or self.state.chunk_rows), 1)
        for start in range(0, self.n_rows, step):
            yield start, np.asarray(self.array[start:min(start + step, self.n_rows)], dtype=np.float32)

    def take(self, rows: np.ndarray | None = None) -> np.ndarray:
        """The committed values [n, d], or the rows ``rows`` [m] (any order) as [m, d]."""
        if rows is None:
            return np.asarray(self.array[:self.n_rows], dtype=np.float32)
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_rows):
            raise StoreError(f"row numbers must lie in [0, {self.n_rows}); got {rows.min()}..{rows.max()}.")
        order = np.argsort(rows, kind="stable")
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        if rows.size:
            picked = rows[order]
            if hasattr(self.array, "get_orthogonal_selection"):
                out[order] = self.array.get_orthogonal_selection((picked, slice(None)))
            else:
                out[order] = np.asarray(self.array)[picked]
        return out

    def blocks(self, rows: np.ndarray | None = None, *, block_rows: int = 32768
               ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(row numbers [c], values [c, d])`` over all committed rows or the sorted ``rows``.

        Stored chunks are read whole, one ahead in a background thread (reading overlaps computing),
        and cut into blocks of ``block_rows``.
        """
        from concurrent.futures import ThreadPoolExecutor

        if rows is None:
            step = self.state.chunk_rows * max(1, block_rows // self.state.chunk_rows)
            spans = [np.arange(s, min(s + step, self.n_rows), dtype=np.int64) for s in range(0, self.n_rows, step)]
            read = lambda span: np.asarray(self.array[span[0]:span[-1] + 1], dtype=np.float32)  # noqa: E731
        else:
            rows = np.asarray(rows, dtype=np.int64)
            spans = [rows[s:s + block_rows] for s in range(0, len(rows), block_rows)]
            read = self.take
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(read, spans[0]) if spans else None
            for i, span in enumerate(spans):
                values = pending.result()
                pending = pool.submit(read, spans[i + 1]) if i + 1 < len(spans) else None
                for first in range(0, len(values), block_rows):
                    yield span[first:first + block_rows], values[first:first + block_rows]
