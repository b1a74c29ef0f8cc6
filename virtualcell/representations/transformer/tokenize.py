"""Cells as sequences of gene tokens: binned values (scGPT) or rank-value order (Geneformer).

A cell ``x`` [genes] becomes ``[CLS] g_1 g_2 ... g_L [PAD] ...``: the ``L <= max_tokens`` genes it
expresses most strongly, most strongly first. Two value encodings:

- ``"binned"`` (scGPT, Cui et al. 2024): each token also carries a value id, the cell's own
  quantile bin of the gene's expression among all genes the cell expresses (1..n_bins; the bin
  edges are per cell, so sequencing depth does not shift them; equal values share a bin, which
  matters in sparse cells where most expressed genes have one count). Order carries no
  information: positions are all 0.
- ``"rank"`` (Geneformer, Theodoris et al. 2023): genes are ordered by expression divided by the
  gene's median non-zero expression over the training corpus (so housekeeping genes drop back and
  cell-defining genes come forward); the order *is* the value, read through position embeddings.

Everything here is pure torch on the device of ``x``; nothing is learned.
"""

from __future__ import annotations

import dataclasses

import torch

__all__ = ["TokenBatch", "tokenize", "SPECIAL_TOKENS", "MODES", "gene_medians", "median_factors", "check_values"]

MODES = ("binned", "rank")
#: token ids of our own vocabularies (a pretrained table brings its own)
SPECIAL_TOKENS = {"pad": 0, "mask": 1, "cls": 2}


@dataclasses.dataclass
class TokenBatch:
    """Token ids, value ids and targets of ``b`` cells, ``T`` positions (``T = 1 + L`` with a CLS).

    Attributes:
        input_ids: [b, T] long, vocabulary ids (``pad`` where there is no gene).
        value_ids: [b, T] long, bins 1..n_bins of the genes (0 for CLS and padding); all 0 in rank mode.
        values: [b, T] float, the input expression of each token (0 for CLS and padding).
        attention_mask: [b, T] long, 1 for CLS and genes.
        gene_mask: [b, T] bool, True for gene tokens (not CLS, not padding).
        position_ids: [b, T] long, 0..T-1 (rank mode) or all 0 (binned mode).
    """

    input_ids: torch.Tensor
    value_ids: torch.Tensor
    values: torch.Tensor
    attention_mask: torch.Tensor
    gene_mask: torch.Tensor
    position_ids: torch.Tensor


def gene_medians(x: torch.Tensor, *, log_input: bool = True) -> torch.Tensor:
    """Geneformer's normalisation factors: per-gene median of the non-zero (normalised) expression [genes].

    ``x`` [n, genes] is log1p of normalised counts when ``log_input`` (the median is taken after
    ``expm1``). Genes never expressed get 1.
    """
    values = torch.expm1(x.float()) if log_input else x.float()
    values = torch.where(values > 0, values, torch.full_like(values, float("nan")))
    return median_factors(torch.nanmedian(values, dim=0).values)   # the lower median of an even count


def median_factors(medians: torch.Tensor) -> torch.Tensor:
    """Per-gene medians [genes] (NaN for a gene never expressed) as rank-mode divisors: NaN -> 1, at least 1e-6."""
    return torch.nan_to_num(medians, nan=1.0).clamp_min(1e-6)


def check_values(x: torch.Tensor) -> None:
    """Refuse NaN, infinite or negative values in ``x`` [n, genes]: gene tokens need log-normalised expression."""
    if not torch.isfinite(x).all():
        raise ValueError("x has NaN or infinite values; clean or impute the data before the transformer.")
    if x.numel() and float(x.min()) < 0:
        raise ValueError(f"x has negative values (min {float(x.min()):.3g}); gene tokens need non-negative, "
                         "log-normalised expression (not scaled data).")


def tokenize(x: torch.Tensor, gene_tokens: torch.Tensor, *, mode: str, max_tokens: int, n_bins: int = 51,
             medians: torch.Tensor | None = None, log_input: bool = True, pad_id: int = 0,
             cls_id: int | None = 2, trim: bool = True) -> TokenBatch:
    """Tokenize cells ``x`` [b, genes] (non-negative) whose columns have vocabulary ids ``gene_tokens`` [genes].

    Args:
        mode: ``"binned"`` or ``"rank"`` (see the module docstring).
        max_tokens: at most this many genes per cell (the most expressed ones).
        n_bins: value bins in binned mode.
        medians: [genes] per-gene normalisation of rank mode (None: 1, a plain expression rank).
        log_input: ``x`` is log1p-normalised; rank mode ranks ``expm1(x) / medians``.
        cls_id: id of the CLS token put first (None: no CLS).
        trim: drop trailing positions that are padding in every cell of the batch.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}.")
    if x.ndim != 2 or x.shape[1] != gene_tokens.shape[0]:
        raise ValueError(f"x must be [cells, {gene_tokens.shape[0]}]; got {tuple(x.shape)}.")
    x = x.float()
    expressed = x > 0
    if mode == "rank":
        score = torch.expm1(x) if log_input else x
        if medians is not None:
            score = score / medians.to(score)
    else:
        score = x
    score = torch.where(expressed, score, torch.full_like(score, -1.0))
    k = min(int(max_tokens), x.shape[1])
    top_score, top = torch.topk(score, k, dim=1, sorted=True)             # [b, k], strongest first
    present = top_score >= 0
    if trim:
        length = int(present.sum(1).max()) if present.numel() else 0
        top, present = top[:, :max(length, 1)], present[:, :max(length, 1)]
    ids = torch.where(present, gene_tokens.to(x.device)[top], torch.full_like(top, pad_id))
    values = torch.where(present, torch.gather(x, 1, top), torch.zeros_like(top, dtype=x.dtype))
    if mode == "binned":   # share of the cell's expressed genes at or below the value -> 1..n_bins (ties: one bin)
        n_expressed = expressed.sum(1, keepdim=True)
        at_or_below = torch.searchsorted(torch.sort(x, dim=1).values, values.contiguous(), right=True)
        at_or_below = at_or_below - (x.shape[1] - n_expressed)               # the zeros are not expressed
        share = at_or_below.float() / n_expressed.clamp_min(1).float()
        bins = torch.ceil(n_bins * share).long().clamp(1, n_bins)
        value_ids = torch.where(present, bins, torch.zeros_like(bins))
    else:
        value_ids = torch.zeros_like(ids)
    if cls_id is not None:
        b = x.shape[0]
        ids = torch.cat([torch.full((b, 1), cls_id, dtype=ids.dtype, device=x.device), ids], 1)
        value_ids = torch.cat([torch.zeros((b, 1), dtype=ids.dtype, device=x.device), value_ids], 1)
        values = torch.cat([torch.zeros((b, 1), dtype=values.dtype, device=x.device), values], 1)
        gene_mask = torch.cat([torch.zeros((b, 1), dtype=torch.bool, device=x.device), present], 1)
        attention = torch.cat([torch.ones((b, 1), dtype=torch.long, device=x.device), present.long()], 1)
    else:
        gene_mask, attention = present, present.long()
    if mode == "rank":
        position_ids = torch.arange(ids.shape[1], device=x.device).unsqueeze(0).expand_as(ids)
    else:
        position_ids = torch.zeros_like(ids)
    return TokenBatch(ids, value_ids, values, attention, gene_mask, position_ids)
