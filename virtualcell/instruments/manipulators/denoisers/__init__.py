"""Denoiser networks for diffusion manipulators, with their timestep and condition embeddings."""

from .embeddings import CovariateEmbedding, LabelEmbedding, TimestepConditioning
from .residual_mlp import AdaptiveResidualBlock, ResidualMLPDenoiser

__all__ = ["ResidualMLPDenoiser", "AdaptiveResidualBlock", "TimestepConditioning", "LabelEmbedding",
           "CovariateEmbedding"]
