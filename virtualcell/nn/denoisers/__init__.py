"""Denoiser networks for diffusion manipulators, with their timestep and condition embeddings."""

from .embeddings import CovariateEmbedding, DenoiserConditioning, LabelEmbedding, TimestepConditioning
from .residual_mlp import AdaptiveResidualBlock, ResidualMLPDenoiser
from .transformer import FeatureGroupTransformerDenoiser

__all__ = ["ResidualMLPDenoiser", "FeatureGroupTransformerDenoiser", "AdaptiveResidualBlock", "DenoiserConditioning",
           "TimestepConditioning", "LabelEmbedding", "CovariateEmbedding"]
