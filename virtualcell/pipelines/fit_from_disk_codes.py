"""The pass of a fit from disk after the encoder is trained: the latent codes, the manipulator and the
gene-space response means, in one sequential read of the cells.

A manipulator fitted on per-group sums of the codes (``GroupSumsManipulator``: control, mean-shift,
mean-perturbation, latent-arithmetic) gets the sums of its ``group_plan`` added up chunk by chunk, so the
codes [n_cells, d] are never held and the per-cell ids are int32 (``streams_codes`` in
``fit_from_disk_components``). Otherwise (another manipulator, or an mlp-decoder that trains on the codes)
the codes are written into one preallocated tensor and the manipulator is fitted on them, as in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from ..component import Condition
from ..execution import batched_apply
from ..nn.group_means import GroupPlan, group_index, means_from_sums
from ..train.disk_loader import DiskRows

__all__ = ["CodesPass", "int32_labels", "PASS_ROWS"]

#: the first rows, read and encoded first: the sample the pipeline checks its parts and conditions on
PASS_ROWS = 8192
_READ_ROWS = 2048   # rows read, encoded and summed (float64) at once: temporaries of 2,048 x genes


def int32_labels(labels: Condition) -> Condition:
    """``labels`` with int32 condition and context ids (half the bytes per cell of int64; ids < 2**31)."""
    small = lambda v: None if v is None else v.to(torch.int32)
    return Condition(small(labels.target), small(labels.source), small(labels.context), labels.covariates)


class _Sums:
    """``sums`` [G, d] and ``totals`` [G] (float64) added up over chunks of cells."""

    def __init__(self) -> None:
        self.sums: torch.Tensor | None = None
        self.totals: torch.Tensor | None = None

    def add(self, sums: torch.Tensor, totals: torch.Tensor) -> None:
        if self.sums is None:
            self.sums, self.totals = sums, totals
        else:
            self.sums += sums
            self.totals += totals


class CodesPass:
    """One sequential pass over every cell of ``rows`` with the trained ``pipe.encoder``.

    Built, it has read and encoded the first chunk: ``x`` [m, genes] and ``z`` [m, d] on ``pipe.device``, the
    sample the pipeline checks its parts and conditions on (``fit_targets``). :meth:`fit` reads the rest.
    """

    def __init__(self, pipe: Any, rows: DiskRows) -> None:
        self.pipe, self.rows = pipe, rows
        self._chunks = rows.chunks(_READ_ROWS)
        self.x = None
        for index, x in self._chunks:   # the sample, filled read by read (no list of parts to concatenate)
            if self.x is None:
                self.x = torch.empty((min(PASS_ROWS, len(rows)), x.shape[1]), dtype=x.dtype, device=x.device)
            self.x[int(index[0]):int(index[-1]) + 1] = x
            if index[-1] + 1 >= len(self.x):
                break
        self.z = self._encode(self.x)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return batched_apply(self.pipe.encoder.encode, x, batch_size=self.pipe.batch_size)

    def _all(self) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """``(first row, x [m, genes], z [m, d])`` of every chunk, the sample first (then let go)."""
        first, self.x = self.x, None
        for part in range(0, len(first), _READ_ROWS):
            yield part, first[part:part + _READ_ROWS], self.z[part:part + _READ_ROWS]
        del first
        self.z = self.z[:2].clone()   # a sample of codes (their width), not a chunk
        for index, x in self._chunks:
            yield int(index[0]), x, self._encode(x)

    def fit(self, labels: Condition, *, n_conditions: int, n_contexts: int, stream: bool, seed: int,
            progress: bool) -> torch.Tensor:
        """Read every chunk; fit ``pipe.manipulator`` on ``labels`` [n] (the cells' conditions and contexts): on its
        ``group_plan``'s sums when ``stream``, else on all codes [n, d], held; set ``pipe.response_means`` (means
        [K, N, genes] and counts [K, N], or None without contexts). Returns the codes a decoder may train on: all
        of them (held) or, streamed, two of them (a decoder that needs no codes only checks their width)."""
        pipe = self.pipe
        plan = pipe.manipulator.group_plan(labels, n_conditions=n_conditions, n_contexts=n_contexts,
                                           seed=seed) if stream else None
        held = None if stream else torch.empty((len(self.rows), self.z.shape[1]), dtype=self.z.dtype)
        codes, genes = _Sums(), _Sums()
        for begin, x, z in self._all():
            cells = slice(begin, begin + len(x))
            if held is not None:
                held[cells] = z.cpu()
            if plan is not None:
                codes.add(*plan.sums(z, cells))
            if labels.context is not None:   # the response means: one group per (context, condition)
                group = group_index(labels.target[cells], labels.context[cells], n_conditions)
                genes.add(*GroupPlan(group, max(n_contexts, 1) * n_conditions).sums(x))
        pipe.response_means = None if genes.sums is None else means_from_sums(genes.sums, genes.totals, n_conditions)
        pipe.manipulator.to(pipe.device)
        if plan is not None:
            pipe.manipulator.fit_sums(codes.sums, codes.totals, labels, n_conditions=n_conditions, n_contexts=n_contexts)
            return self.z
        held = held.to(pipe.device)
        pipe.manipulator.fit(held, labels, n_conditions=n_conditions, n_contexts=n_contexts, seed=seed,
                             progress=progress)
        return held
