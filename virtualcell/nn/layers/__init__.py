"""Building blocks of the conditional GAN (CellGen): FiLM, feature-group attention, condition
embedding, the shared trunk, and the cell groups its critic matches."""

from .cell_groups import condition_offsets, feature_spread, paired_groups, pseudo_contexts
from .condition_embedding import ConditionEmbedding
from .feature_attention import FeatureGroups, GatedFeatureAttention, GroupDecoder, MultiHeadSelfAttention
from .film import FiLM
from .trunk import CGANTrunk

__all__ = ["FiLM", "FeatureGroups", "GroupDecoder", "GatedFeatureAttention", "MultiHeadSelfAttention",
           "ConditionEmbedding", "CGANTrunk", "condition_offsets", "pseudo_contexts", "feature_spread",
           "paired_groups"]
