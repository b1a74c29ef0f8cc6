"""Neighbour sampling without pyg-lib: exact k-hop blocks around seed cells, from a CSR graph.

PyG's ``NeighborLoader`` samples through ``pyg-lib`` or ``torch-sparse``, which are compiled
extensions not published on PyPI (``torch_geometric.typing.WITH_PYG_LIB`` is False here, and the
loader raises ``ImportError: 'NeighborSampler' requires either 'pyg-lib' or 'torch-sparse'``). A
spatial neighbour graph has a small, near-constant degree (k nearest cells), so taking *every*
neighbour for ``hops`` hops is cheap and needs no sampling: a block around ``b`` seed cells holds
about ``b * (1 + k + ...)`` cells however large the slide, and an ``L``-layer GNN computes the
seeds' outputs on the block exactly as on the whole graph (every cell within ``L - 1`` hops keeps
all its in-edges). Gathers are vectorised ``torch`` index operations on the CSR arrays.
"""

from __future__ import annotations

import dataclasses

import torch

__all__ = ["CSRGraph", "Block", "csr_from_edge_index", "self_loop_csr", "khop_block"]


@dataclasses.dataclass(frozen=True)
class CSRGraph:
    """In-neighbours of ``n`` cells: ``indices[indptr[i]:indptr[i + 1]]`` send messages to ``i`` (CPU, long)."""

    indptr: torch.Tensor
    indices: torch.Tensor

    @property
    def n_nodes(self) -> int:
        return int(self.indptr.shape[0] - 1)

    @property
    def degrees(self) -> torch.Tensor:
        return self.indptr[1:] - self.indptr[:-1]


@dataclasses.dataclass(frozen=True)
class Block:
    """A k-hop block: ``nodes`` [m] global ids (seeds first), ``edge_index`` [2, e] local ids, ``n_seeds``."""

    nodes: torch.Tensor
    edge_index: torch.Tensor
    n_seeds: int


def csr_from_edge_index(edge_index: torch.Tensor, n_nodes: int) -> CSRGraph:
    """CSR of in-neighbours from PyG's ``edge_index`` [2, E] (row 0 = source, row 1 = target)."""
    edge_index = torch.as_tensor(edge_index).to("cpu", torch.long)
    if edge_index.ndim != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must have shape [2, E]; got {tuple(edge_index.shape)}.")
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= n_nodes):
        raise ValueError(f"edge_index refers to nodes outside [0, {n_nodes}); it does not belong to these {n_nodes} cells.")
    targets, order = torch.sort(edge_index[1], stable=True)
    counts = torch.bincount(targets, minlength=n_nodes)
    indptr = torch.zeros(n_nodes + 1, dtype=torch.long)
    torch.cumsum(counts, 0, out=indptr[1:])
    return CSRGraph(indptr, edge_index[0, order].contiguous())


def self_loop_csr(n_nodes: int) -> CSRGraph:
    """The graph where each cell's only neighbour is itself (the fallback when no graph is given)."""
    return CSRGraph(torch.arange(n_nodes + 1, dtype=torch.long), torch.arange(n_nodes, dtype=torch.long))


def _gather(graph: CSRGraph, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All in-edges of ``targets``: (sources [e], their targets [e]), global ids."""
    starts = graph.indptr[targets]
    degrees = graph.indptr[targets + 1] - starts
    total = int(degrees.sum())
    owner = torch.repeat_interleave(targets, degrees, output_size=total)
    offsets = torch.arange(total) - torch.repeat_interleave(torch.cumsum(degrees, 0) - degrees, degrees,
                                                            output_size=total)
    return graph.indices[torch.repeat_interleave(starts, degrees, output_size=total) + offsets], owner


def khop_block(graph: CSRGraph, seeds: torch.Tensor, hops: int, local_id: torch.Tensor) -> Block:
    """The exact ``hops``-hop block around ``seeds`` [b] (distinct global ids).

    ``local_id`` is a scratch tensor [n] filled with -1, reused across calls (returned as it came).
    """
    seeds = seeds.to("cpu", torch.long)
    nodes = [seeds]
    local_id[seeds] = torch.arange(seeds.numel())
    count = seeds.numel()
    frontier = seeds
    sources, targets = [], []
    for _ in range(hops):
        src, dst = _gather(graph, frontier)
        sources.append(src)
        targets.append(dst)
        fresh = torch.unique(src[local_id[src] < 0])
        local_id[fresh] = torch.arange(count, count + fresh.numel())
        count += fresh.numel()
        nodes.append(fresh)
        frontier = fresh
    all_nodes = torch.cat(nodes)
    src, dst = (torch.cat(sources), torch.cat(targets)) if sources else (torch.empty(0, dtype=torch.long),) * 2
    edge_index = torch.stack([local_id[src], local_id[dst]])
    local_id[all_nodes] = -1
    return Block(all_nodes, edge_index, int(seeds.numel()))
