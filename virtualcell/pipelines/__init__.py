"""Pipelines: named sets of components, AnnData in and AnnData out."""

from .ensemble import EnsemblePipeline
from .perturbation import PerturbationPipeline
from .pipeline import Pipeline

__all__ = ["Pipeline", "PerturbationPipeline", "EnsemblePipeline"]
