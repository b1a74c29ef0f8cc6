"""A tiny BERT masked-LM folder in Geneformer's layout, for tests of ``from_pretrained`` (needs ``transformers``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

__all__ = ["write_tiny_bert"]


def write_tiny_bert(folder: Path, genes: Sequence[str], *, hidden_size: int = 8, layers: int = 1,
                    medians: bool = False, seed: int = 0) -> Path:
    """Write ``config.json`` + ``model.safetensors`` + ``token_dictionary.json`` (and ``gene_medians.json``).

    Tokens: ``<pad>`` 0, ``<mask>`` 1, then ``genes`` in order; 2 attention heads, feed-forward
    ``2 * hidden_size``, 12 positions. Returns ``folder``.
    """
    import torch
    from transformers import BertConfig, BertForMaskedLM

    folder = Path(folder)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=2 + len(genes), hidden_size=hidden_size, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * hidden_size, max_position_embeddings=12,
                        pad_token_id=0)
    BertForMaskedLM(config).save_pretrained(folder, safe_serialization=True)
    tokens = {"<pad>": 0, "<mask>": 1, **{g: i + 2 for i, g in enumerate(genes)}}
    (folder / "token_dictionary.json").write_text(json.dumps(tokens))
    if medians:
        (folder / "gene_medians.json").write_text(json.dumps({g: 1.0 + (i % 4) for i, g in enumerate(genes)}))
    return folder
