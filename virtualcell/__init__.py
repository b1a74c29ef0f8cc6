"""virtualcell: composable AI virtual cells (encoders, manipulators, decoders) on AnnData."""

from __future__ import annotations

from importlib import metadata as _metadata

from .component import Component, Condition, Decoder, Encoder, Manipulator, NotFittedError
from .config import Configurable
from .data.checks import DataError

try:
    __version__ = _metadata.version("virtualcell")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "Component", "Condition", "Configurable", "DataError", "Decoder", "Encoder", "Manipulator",
    "NotFittedError", "PerturbationPipeline", "Pipeline", "create", "load_component", "load_pipeline",
    "registry", "datasets", "evaluate", "embed", "EmbeddingStore", "publish", "pull", "__version__",
]


def __getattr__(name: str):
    """Lazy public names, so that ``import virtualcell`` stays fast."""
    if name in ("PerturbationPipeline", "Pipeline"):
        from . import pipelines

        return getattr(pipelines, name)
    if name in ("create", "load_component", "registry"):
        from . import registry as _registry

        return {"create": _registry.create, "load_component": _registry.load_component,
                "registry": _registry.registry}[name]
    if name == "embed":
        from .pipelines.embed import embed

        return embed
    if name == "EmbeddingStore":
        from .representations.store import EmbeddingStore

        return EmbeddingStore
    if name in ("publish", "pull"):
        from .registry import publish as _publish

        return getattr(_publish, name)
    if name == "load_pipeline":
        from .pipelines import PerturbationPipeline

        return PerturbationPipeline.load
    if name in ("datasets", "evaluate"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'virtualcell' has no attribute {name!r}")
