"""A gene-token transformer encoder on Hugging Face ``transformers`` (BERT over gene tokens).

``tokenize``: cells -> gene-token sequences (binned values as scGPT, rank-value order as Geneformer);
``model``: the BERT masked-LM and its pretraining objectives; ``encoder``: the ``transformer``
component; ``pretrain``: its training loop (in memory or from on-disk rows, data-parallel, resumable);
``disk_medians``: rank mode's gene medians from a sample of on-disk cells; ``checkpoint``: starting
from a local BERT checkpoint; ``vocabulary``: gene-token tables and gene-ID checks. ``transformers`` is
imported only when a model is built.
"""

from .encoder import TransformerEncoder

__all__ = ["TransformerEncoder"]
