"""Building blocks of the conditional GAN (CellGen): FiLM, feature-group attention, condition embedding."""

from .condition_embedding import ConditionEmbedding
from .feature_attention import FeatureGroups, GatedFeatureAttention, GroupDecoder, MultiHeadSelfAttention
from .film import FiLM
from .trunk import CGANTrunk

__all__ = ["FiLM", "FeatureGroups", "GroupDecoder", "GatedFeatureAttention", "MultiHeadSelfAttention", "ConditionEmbedding", "CGANTrunk"]
