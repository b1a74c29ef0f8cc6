"""Rank mode's per-gene medians from rows on disk, never holding the matrix.

In memory, :func:`.tokenize.gene_medians` takes each gene's median non-zero ``expm1`` value over every
cell. From disk the same medians are taken over a uniformly random, seeded sample of at most
``at_most`` cells, fixed before any read (:func:`sample_rows`) and read in file order in chunks;
only the sample's non-zero values are kept (8 bytes each: the gene id and the value). When the file
has no more cells than ``at_most``, every cell is used and the medians are exactly the in-memory ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .tokenize import check_values, median_factors

__all__ = ["sample_rows", "nonzero_medians", "disk_gene_medians"]


def sample_rows(n: int, at_most: int, seed: int) -> np.ndarray:
    """Sorted row indices: all ``n`` rows when ``n <= at_most``, else ``at_most`` of them drawn uniformly
    without replacement (seeded by ``seed``)."""
    if n <= at_most:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng([seed, 0x6D656469])   # a stream of its own: the medians' sample
    return np.sort(rng.choice(n, size=at_most, replace=False)).astype(np.int64)


def nonzero_medians(genes: torch.Tensor, values: torch.Tensor, n_genes: int) -> torch.Tensor:
    """Per-gene lower median [n_genes] of ``values`` [m] whose genes are ``genes`` [m] (NaN for a gene with
    none): the value ``torch.nanmedian`` picks, ``sorted[(count - 1) // 2]``."""
    by_value = torch.sort(values, stable=True).indices
    by_gene = torch.sort(genes[by_value].long(), stable=True).indices
    ordered = values[by_value][by_gene]                              # grouped by gene, ascending within each
    counts = torch.bincount(genes.long(), minlength=n_genes)
    starts = torch.cumsum(counts, 0) - counts
    medians = torch.full((n_genes,), float("nan"), dtype=values.dtype)
    has = counts > 0
    medians[has] = ordered[starts[has] + (counts[has] - 1) // 2]
    return medians


def disk_gene_medians(rows: Any, *, at_most: int, seed: int, log_input: bool = True,
                      chunk: int = 8192) -> torch.Tensor:
    """:func:`.tokenize.gene_medians` of on-disk ``rows`` (a ``DiskRows`` [n, genes]) from a sample of at most
    ``at_most`` cells (all when ``n <= at_most``: then equal to the in-memory medians); each chunk read is
    checked (:func:`.tokenize.check_values`). Returns the divisors [genes] on the CPU."""
    sample = sample_rows(len(rows), int(at_most), seed)
    genes, values = [], []
    for begin in range(0, sample.size, chunk):
        x = rows[sample[begin:begin + chunk]]                           # float32 [b, genes], in file order
        check_values(x)
        expressed = torch.expm1(x) if log_input else x
        cell, gene = torch.nonzero(expressed > 0, as_tuple=True)
        genes.append(gene.to(torch.int32).cpu())
        values.append(expressed[cell, gene].cpu())
    n_genes = int(rows.shape[1])
    if not genes:
        return median_factors(torch.full((n_genes,), float("nan")))
    return median_factors(nonzero_medians(torch.cat(genes), torch.cat(values), n_genes))
