"""Shuffled minibatches from an on-disk AnnData matrix (h5ad or zarr; CSR or dense; one store or many shards),
never densified whole.

:class:`DiskRows` reads any set of rows of ``X`` (or a layer) by sorting them and coalescing
contiguous runs into slice reads, and applies a per-batch ``transform`` (the preprocessing recipe,
e.g. :func:`virtualcell.data.streaming.batch_recipe`) that turns the raw rows [b, all genes] into
dense float32 [b, genes]. It indexes like a tensor (``rows_source[idx] -> [len(idx), genes]``), so
code written for ``x[rows]`` on a device-resident tensor runs unchanged from disk. Several shards
(a list of paths, or a folder of them: :mod:`.disk_shards`) are one matrix, rows concatenated in
order; before each read the stores read from are checked unchanged since they were opened.

:class:`DiskLoader` iterates an epoch in annbatch's way (``docs/scale.md``): the rows are cut into
blocks of ``block_size`` consecutive cells, the blocks are shuffled (seeded by ``seed`` and the
epoch), ``pool_blocks`` blocks are read at once (a few large reads) and shuffled in memory, then cut
into batches. ``block_size=1`` is a plain per-cell permutation (slow reads, exact reproduction of an
in-memory loop's order). The batch list of an epoch is a pure function of (seed, epoch), so a run
resumes mid-epoch at any cell of it and on any number of processes (rank r of w takes the global
batches ``r, r + w, ...`` cut from the rest of the epoch's order).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from .disk_shards import DiskDataError, Shard, check_same_genes, open_matrix, shard_paths

__all__ = ["DiskRows", "DiskLoader", "Batch", "LoaderBatches", "open_matrix", "epoch_order", "sorted_indices", "sorted_rows",
           "cut_batches", "loader_batches"]

#: per-batch transform: raw rows (CSR or dense ndarray [b, all genes]) -> dense float32 [b, genes]
Transform = Callable[[Any], np.ndarray]


class DiskRows:
    """Rows of an on-disk expression matrix: ``self[rows] -> torch.Tensor [len(rows), n_features]``.

    Args:
        source: path of an ``.h5ad`` file or ``.zarr`` folder, a backed AnnData, a list of such paths
            (shards: rows concatenated in order, the same genes in each), or a folder of shards.
        layer: read ``layers[layer]`` instead of ``X``.
        rows: the rows of the stores this reads (sorted file rows; default all): row ``i`` here is file row
            ``rows[i]``, e.g. the training cells of a held-out split (:class:`~.disk_cells.DiskCells`).
        transform: raw rows -> dense float32 [b, n_features] (default: densify, all genes).
        n_features: output columns of ``transform`` (default: the matrix's genes).
        device: where returned tensors live.
    """

    def __init__(self, source: Any, *, layer: str | None = None, rows: Sequence[int] | None = None,
                 transform: Transform | None = None, n_features: int | None = None,
                 device: str | torch.device = "cpu") -> None:
        self.shards = [Shard(path, layer) for path in shard_paths(source)]
        if len(self.shards) > 1:
            check_same_genes([str(s.path) for s in self.shards], [s.var_names() for s in self.shards])
        self.offsets = np.cumsum([0] + [len(s) for s in self.shards])
        self.sparse = any(s.sparse for s in self.shards)
        self.selection = None if rows is None else sorted_rows(rows, int(self.offsets[-1]))
        n_rows = int(self.offsets[-1]) if self.selection is None else int(self.selection.size)
        self.shape_on_disk = (n_rows, self.shards[0].shape[1])
        self.transform = transform
        self.n_features = int(n_features if n_features is not None else self.shape_on_disk[1])
        self.device = torch.device(device)
        self.ndim = 2
        #: ``DiskLoader`` options (block_size, pool_blocks) for training on shuffled blocks; None: models
        #: index rows one batch at a time in their own (in-memory) order, the exact but slower path
        self.loader_options: dict[str, int] | None = None
        self.checkpoint_every_steps: int | None = None   # mid-epoch checkpoints of models trained from it

    @property
    def shape(self) -> tuple[int, int]:
        return (self.shape_on_disk[0], self.n_features)

    def __len__(self) -> int:
        return self.shape_on_disk[0]

    def identity(self) -> list[list[Any]]:
        """``[[path, identity], ...]`` of the shards as opened (what a checkpoint records)."""
        return [[str(s.path), s.identity] for s in self.shards]

    def check_identity(self, saved: list[list[Any]] | None) -> None:
        """Raise :class:`DiskDataError` unless ``saved`` (a checkpoint's :meth:`identity`) is these stores'."""
        if saved is None or [i for _, i in saved] == [s.identity for s in self.shards]:
            return
        changed = [str(s.path) for s, (_, i) in zip(self.shards, saved) if s.identity != i]
        what = (f"{changed[0]} changed since" if changed else
                f"it was written on {len(saved)} shard(s), this run has {len(self.shards)}")
        raise DiskDataError(f"The checkpoint cannot resume on this data: {what} (its size or modification time "
                            "differs from when the checkpoint was written). Restore the files the run started on, "
                            "or delete the checkpoint folder (or pick another one) to start over on the new data.")

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "DiskRows":
        """Returns self with batches put on ``device`` (float32 always), as ``Tensor.to`` would."""
        if device is not None:
            self.device = torch.device(device)
        return self

    def read(self, rows: np.ndarray) -> Any:
        """Raw rows in the given order: CSR (float32 values) or dense ndarray [len(rows), all genes]."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} cells.")
        if self.selection is not None:
            rows = self.selection[rows]
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        shard_of = np.searchsorted(self.offsets, sorted_rows, side="right") - 1
        breaks = np.flatnonzero((np.diff(sorted_rows) != 1) | (np.diff(shard_of) != 0)) + 1
        for index in np.unique(shard_of):
            self.shards[index].check_unchanged()
        starts = np.concatenate([[0], breaks]).astype(np.int64) if sorted_rows.size else np.zeros(0, np.int64)
        lasts = np.append(breaks, sorted_rows.size).astype(np.int64) - 1 if sorted_rows.size else starts
        parts, offsets = [], self.offsets.tolist()
        runs = zip(shard_of[starts].tolist(), sorted_rows[starts].tolist(), sorted_rows[lasts].tolist())
        for shard, first, last in runs:
            begin = first - offsets[shard]
            part = self.shards[shard].read_run(begin, begin + last - first + 1)
            parts.append(sp.csr_matrix(part) if self.sparse and not sp.issparse(part) else part)
        if self.sparse:
            block = sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, self.shape_on_disk[1]))
        else:
            block = np.concatenate(parts) if parts else np.zeros((0, self.shape_on_disk[1]), np.float32)
        # a repeated row starts a new run, so the block holds one row per request, in sorted order
        inverse = np.empty_like(order)
        inverse[order] = np.arange(order.size)
        return block[inverse]

    def transformed(self, raw: Any) -> np.ndarray:
        """``transform(raw)`` (or the densified rows), checked finite: float32 [b, n_features]."""
        if self.transform is not None:
            x = self.transform(raw)
        else:
            x = raw.toarray() if sp.issparse(raw) else np.asarray(raw)
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape[1] != self.n_features:
            raise ValueError(f"The batch transform returned {x.shape[1]} columns; expected {self.n_features}.")
        if not np.isfinite(x).all():
            raise ValueError("The on-disk matrix has NaN or infinite values in the rows just read; clean the file.")
        return x

    def raw_chunks(self, size: int = 8192) -> Iterator[tuple[np.ndarray, Any]]:
        """One sequential pass: ``(row indices, raw rows)`` (``read``: CSR or dense) of consecutive runs of ``size`` rows."""
        for begin in range(0, len(self), size):
            index = np.arange(begin, min(begin + size, len(self)))
            yield index, self.read(index)

    def chunks(self, size: int = 8192) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """One sequential pass: ``(row indices, self[row indices])`` for consecutive runs of ``size`` rows."""
        for index, raw in self.raw_chunks(size):
            yield index, torch.from_numpy(self.transformed(raw)).to(self.device)

    def __getitem__(self, rows: Any) -> torch.Tensor:
        """Rows ``rows`` (index tensor/array, in that order) after ``transform``, float32 on ``self.device``."""
        if isinstance(rows, torch.Tensor):
            rows = rows.detach().cpu().numpy()
        elif isinstance(rows, slice):
            rows = np.arange(len(self))[rows]
        return torch.from_numpy(self.transformed(self.read(np.asarray(rows)))).to(self.device)


def sorted_rows(rows: Sequence[int], n_rows: int, *, what: str = "rows must be") -> np.ndarray:
    """``rows`` as sorted, distinct int64 positions, each in ``[0, n_rows)``; else IndexError (``what`` heads
    the message on order)."""
    rows = np.asarray(rows, dtype=np.int64).ravel()
    if rows.size and (rows.min() < 0 or rows.max() >= n_rows):
        raise IndexError(f"row index out of range for {n_rows} cells.")
    if rows.size > 1 and not (np.diff(rows) > 0).all():
        raise IndexError(f"{what} sorted, distinct positions (file order), or a boolean mask.")
    return rows


def sorted_indices(indices: Sequence[int] | None, n_rows: int) -> np.ndarray:
    """``indices`` (default all ``n_rows``) sorted, int32 below 2**31 rows (4 bytes a cell); sorted ones: no copy."""
    dtype = np.int32 if n_rows < 2**31 else np.int64
    rows = np.arange(n_rows, dtype=dtype) if indices is None else np.asarray(indices, dtype=dtype)
    return rows if rows.size < 2 or bool((rows[1:] >= rows[:-1]).all()) else np.sort(rows)


def epoch_order(indices: np.ndarray, *, block_size: int, pool_blocks: int, seed: int, epoch: int,
                shuffle: bool = True) -> np.ndarray:
    """The order of one epoch over ``indices`` (sorted file rows): blocks of consecutive rows, shuffled,
    pooled ``pool_blocks`` at a time and shuffled within the pool (a pure function of seed and epoch)."""
    if not shuffle or indices.size == 0:
        return indices
    rng = np.random.default_rng([seed, epoch])
    starts, order, at = np.arange(0, indices.size, block_size), np.empty_like(indices), 0   # filled pool by pool
    picked = rng.permutation(starts.size)
    for begin in range(0, starts.size, pool_blocks):
        pool = np.concatenate([indices[b:b + block_size] for b in starts[picked[begin:begin + pool_blocks]]])
        order[at:at + pool.size] = pool[rng.permutation(pool.size)]
        at += pool.size
    return order


def cut_batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """``order`` in batches of ``batch_size``; a last batch of 1 row is dropped (batch norm needs 2)."""
    batches = [order[b:b + batch_size] for b in range(0, order.size, batch_size)]
    if batches and batches[-1].size < 2 and order.size > 1:
        batches.pop()
    return batches


class Batch:
    """One minibatch: ``rows`` (file row indices [b]) and ``x`` (float32 [b, n_features] on the device)."""

    __slots__ = ("rows", "x")

    def __init__(self, rows: np.ndarray, x: torch.Tensor) -> None:
        self.rows, self.x = rows, x

    def __len__(self) -> int:
        return int(self.rows.size)


class DiskLoader:
    """Shuffled minibatches of a :class:`DiskRows`, reading ``pool_blocks * block_size`` rows at a time.

    Args:
        rows_source: the on-disk rows.
        batch_size: cells per batch (per process).
        indices: the file rows to iterate (default all), e.g. the training split.
        block_size, pool_blocks: consecutive rows per block and blocks read (and shuffled) together.
        seed: with the epoch, fixes the order.
        shuffle: False iterates in file order (streaming statistics, encoding).
    """

    def __init__(self, rows_source: DiskRows, *, batch_size: int = 128, indices: Sequence[int] | None = None,
                 block_size: int = 64, pool_blocks: int = 64, seed: int = 0, shuffle: bool = True) -> None:
        if batch_size < 1 or block_size < 1 or pool_blocks < 1:
            raise ValueError("batch_size, block_size and pool_blocks must be >= 1.")
        self.source = rows_source
        self.indices = sorted_indices(indices, len(rows_source))
        self.batch_size, self.block_size, self.pool_blocks = batch_size, block_size, pool_blocks
        self.seed, self.shuffle = seed, shuffle

    def order(self, epoch: int) -> np.ndarray:
        return epoch_order(self.indices, block_size=self.block_size, pool_blocks=self.pool_blocks, seed=self.seed,
                           epoch=epoch, shuffle=self.shuffle)

    def batches(self, epoch: int, start: int = 0) -> list[np.ndarray]:
        """The epoch's global batches from its ``start``-th cell (the same cells whatever the batch size)."""
        return cut_batches(self.order(epoch)[start:], self.batch_size)

    def n_steps(self, epoch: int = 0, *, start: int = 0, world: int = 1) -> int:
        """Steps each of ``world`` processes takes from cell ``start`` of the epoch (equal on every rank)."""
        return len(self.batches(epoch, start)) // world

    def iterate(self, epoch: int = 0, *, start: int = 0, rank: int = 0, world: int = 1) -> Iterator[Batch]:
        """This rank's batches of ``epoch`` from its ``start``-th cell: global batch ``k`` of step ``s`` goes to
        rank ``k % world``, so a step of ``world`` processes covers the cells one process covers with
        ``world`` times the batch size. Reads one pool of rows (``block_size * pool_blocks``) at a time."""
        batches = self.batches(epoch, start)
        mine = [batches[rank + world * k] for k in range(len(batches) // world)]
        rows_per_read = max(self.block_size * self.pool_blocks, self.batch_size)
        group: list[np.ndarray] = []
        for i, rows in enumerate(mine):
            group.append(rows)
            if sum(g.size for g in group) >= rows_per_read or i == len(mine) - 1:
                together = np.concatenate(group)
                x = torch.from_numpy(self.source.transformed(self.source.read(together))).to(self.source.device)
                begin = 0
                for part in group:
                    yield Batch(part, x[begin:begin + part.size])
                    begin += part.size
                group = []

    def __iter__(self) -> Iterator[Batch]:
        return self.iterate(0)


class LoaderBatches:
    """``batches(epoch, start)`` of one process for :meth:`TrainingLoop.run`, with the identity of the stores
    it reads: a checkpoint records :meth:`identity` and resuming calls :meth:`check_identity` with it."""

    def __init__(self, loader: DiskLoader) -> None:
        self.loader = loader

    def __call__(self, epoch: int, start: int) -> Iterator[Batch]:
        from .distributed import rank, world

        return self.loader.iterate(epoch, start=start, rank=rank(), world=world())

    def identity(self) -> list[list[Any]]:
        return self.loader.source.identity()

    def check_identity(self, saved: list[list[Any]] | None) -> None:
        self.loader.source.check_identity(saved)


def loader_batches(x: Any, rows: torch.Tensor, batch_size: int, seed: int) -> LoaderBatches | None:
    """For a model's ``fit``: ``batches(epoch, start)`` over the file rows ``rows`` of ``x`` for
    :meth:`TrainingLoop.run` (this process's shard when a process group runs), or None when ``x`` is a
    tensor or a :class:`DiskRows` without ``loader_options`` (then the model indexes rows as in memory)."""
    if not isinstance(x, DiskRows) or x.loader_options is None:
        return None
    return LoaderBatches(DiskLoader(x, batch_size=batch_size, indices=rows.cpu().numpy(), seed=seed,
                                    **x.loader_options))
