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
    "registry", "datasets", "evaluate", "embed", "EmbeddingStore", "publish", "pull", "select", "DiskCells",
    "__version__",
]


#: lazy public name -> (module, attribute or None for the module itself)
_LAZY = {
    "PerturbationPipeline": (".pipelines", "PerturbationPipeline"),
    "Pipeline": (".pipelines", "Pipeline"),
    "create": (".registry", "create"),
    "load_component": (".registry", "load_component"),
    "registry": (".registry", None),
    "embed": (".pipelines.embed", "embed"),
    "EmbeddingStore": (".store", "EmbeddingStore"),
    "publish": (".registry.publish", "publish"),
    "pull": (".registry.publish", "pull"),
    "datasets": (".datasets", None),
    "evaluate": (".evaluate", None),
    "select": (".selection", "select"),
    "DiskCells": (".train.disk_cells", "DiskCells"),
}


def __getattr__(name: str):
    """Lazy public names, so that ``import virtualcell`` stays fast.

    Modules are imported with ``importlib`` (never ``from . import x``, whose attribute probe would
    call this function again and recurse). ``virtualcell.registry`` is the registry module
    (``registry.create``, ``registry.names``, ``registry.register`` ...), whichever way it is reached.
    """
    import importlib

    if name == "load_pipeline":
        return importlib.import_module(".pipelines", __name__).Pipeline.load   # reads every pipeline kind
    if name not in _LAZY:
        raise AttributeError(f"module 'virtualcell' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name, __name__)
    return module if attribute is None else getattr(module, attribute)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
