"""The network: a BERT masked-LM (Hugging Face ``transformers``) over gene tokens, plus value heads.

``GeneTokenModel`` wraps ``transformers.BertForMaskedLM`` (so a Geneformer-style checkpoint loads
into it unchanged) and adds, for binned values (scGPT), a value embedding added to each gene
token's embedding, a head that regresses the masked tokens' expression, and scGPT's
"masked value prediction from the cell embedding" (MVC) head, which makes the pooled
representation carry the cell's expression. Pretraining objectives:

- binned: mask ``mask_fraction`` of the gene tokens' *values* (the gene stays visible) and predict
  them (MSE), plus MVC: predict every token's value from the pooled cell representation (MSE);
- rank: mask ``mask_fraction`` of the gene tokens and predict which gene it was (cross-entropy over
  the vocabulary), Geneformer's objective.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .tokenize import TokenBatch

__all__ = ["GeneTokenModel", "bert_config_dict", "POOLINGS"]

POOLINGS = ("mean", "cls")


def bert_config_dict(*, vocab_size: int, hidden_size: int, num_layers: int, num_heads: int, max_tokens: int,
                     dropout: float, pad_id: int = 0) -> dict[str, Any]:
    """The ``transformers.BertConfig`` arguments of a small gene-token BERT, as JSON."""
    return {"vocab_size": int(vocab_size), "hidden_size": int(hidden_size), "num_hidden_layers": int(num_layers),
            "num_attention_heads": int(num_heads), "intermediate_size": int(2 * hidden_size),
            "hidden_dropout_prob": float(dropout), "attention_probs_dropout_prob": float(dropout),
            "max_position_embeddings": int(max_tokens) + 1, "type_vocab_size": 1, "pad_token_id": int(pad_id),
            "model_type": "bert", "architectures": ["BertForMaskedLM"]}


def _bert(config: Mapping[str, Any]):
    from transformers import BertConfig, BertForMaskedLM

    config = {k: v for k, v in config.items() if k not in ("transformers_version",)}
    bert_config = BertConfig.from_dict(config)
    bert_config._attn_implementation = "sdpa"
    return BertForMaskedLM(bert_config)


class GeneTokenModel(nn.Module):
    """BERT over gene tokens; ``n_bins > 0`` adds scGPT's value embedding and value heads.

    Args:
        bert_config: ``BertConfig`` arguments (JSON; see :func:`bert_config_dict`).
        n_bins: value bins (binned mode); 0 for rank mode (no value embedding).
        pooling: ``"mean"`` over gene tokens or the ``"cls"`` token's state.
    """

    def __init__(self, bert_config: Mapping[str, Any], n_bins: int = 0, pooling: str = "mean",
                 bert: nn.Module | None = None) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}; got {pooling!r}.")
        self.mlm = bert if bert is not None else _bert(bert_config)
        hidden = self.mlm.config.hidden_size
        self.pooling, self.n_bins = pooling, int(n_bins)
        if self.n_bins:
            self.value_embedding = nn.Embedding(self.n_bins + 2, hidden, padding_idx=0)   # 0 pad, n_bins+1 mask
            with torch.no_grad():   # BERT's scale: at N(0, 1) the bins would drown the gene embeddings (std 0.02)
                self.value_embedding.weight.normal_(0.0, self.mlm.config.initializer_range)
                self.value_embedding.weight[0].zero_()
            self.value_head = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 1))
            self.cell_head = nn.Linear(hidden, hidden)

    @property
    def mask_value_id(self) -> int:
        return self.n_bins + 1

    @property
    def hidden_size(self) -> int:
        return int(self.mlm.config.hidden_size)

    def hidden_states(self, batch: TokenBatch, input_ids: torch.Tensor | None = None,
                      value_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Last hidden states [b, T, hidden] (``input_ids`` / ``value_ids`` override the batch's, for masking)."""
        ids = batch.input_ids if input_ids is None else input_ids
        embeds = self.mlm.bert.embeddings.word_embeddings(ids)
        if self.n_bins:
            embeds = embeds + self.value_embedding(batch.value_ids if value_ids is None else value_ids)
        attention = batch.attention_mask.clone()
        attention[attention.sum(1) == 0, 0] = 1          # a cell with no expressed gene still attends somewhere
        out = self.mlm.bert(inputs_embeds=embeds, attention_mask=attention, position_ids=batch.position_ids)
        return out.last_hidden_state

    def pool(self, hidden: torch.Tensor, batch: TokenBatch) -> torch.Tensor:
        """Cell representations [b, hidden]: mean over gene tokens, or the CLS state (position 0)."""
        if self.pooling == "cls":
            return hidden[:, 0]
        weights = batch.gene_mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)

    def forward(self, batch: TokenBatch) -> torch.Tensor:
        return self.pool(self.hidden_states(batch), batch)

    def unused_in_pretraining(self) -> list[nn.Parameter]:
        """Parameters :meth:`pretraining_losses` never reaches: in binned mode BERT's masked-LM head (its
        transform and bias; the decoder is tied to the gene embeddings); none in rank mode."""
        if not self.n_bins:
            return []
        shared = {id(p) for p in self.mlm.bert.parameters()}
        return [p for p in self.mlm.cls.parameters() if id(p) not in shared]

    def pretraining_losses(self, batch: TokenBatch, mask_fraction: float, generator: torch.Generator,
                           mask_id: int) -> dict[str, torch.Tensor]:
        """Masked-expression losses of one batch (see the module docstring); ``loss`` is their sum."""
        draw = torch.rand(batch.input_ids.shape, generator=generator, device=generator.device).to(batch.input_ids.device)
        masked = batch.gene_mask & (draw < mask_fraction)
        none = masked.sum(1) == 0                                   # every cell gets at least one masked gene
        first_gene = batch.gene_mask.float().argmax(1)
        masked[none & batch.gene_mask.any(1), first_gene[none & batch.gene_mask.any(1)]] = True
        if self.n_bins:
            value_ids = torch.where(masked, torch.full_like(batch.value_ids, self.mask_value_id), batch.value_ids)
            hidden = self.hidden_states(batch, value_ids=value_ids)
            predicted = self.value_head(hidden).squeeze(-1).float()
            masked_loss = ((predicted - batch.values) ** 2)[masked].mean()
            cell = self.pool(hidden, batch)
            genes = self.mlm.bert.embeddings.word_embeddings(batch.input_ids)
            mvc = (self.cell_head(cell).unsqueeze(1) * genes).sum(-1).float()
            mvc_loss = ((mvc - batch.values) ** 2)[batch.gene_mask].mean()
            return {"loss": masked_loss + mvc_loss, "masked_mse": masked_loss.detach(), "mvc_mse": mvc_loss.detach()}
        input_ids = torch.where(masked, torch.full_like(batch.input_ids, mask_id), batch.input_ids)
        hidden = self.hidden_states(batch, input_ids=input_ids)
        logits = self.mlm.cls(hidden[masked]).float()
        loss = nn.functional.cross_entropy(logits, batch.input_ids[masked])
        return {"loss": loss, "masked_ce": loss.detach()}
