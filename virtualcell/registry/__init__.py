"""Registry (entry points), artifact format, model cards, publishing."""

from .artifact import read_config
from .errors import ArtifactError, TamperedArtifactError
from .registry import (
    GROUP,
    PluginImportError,
    Registry,
    UnknownComponentError,
    create,
    get,
    load_component,
    names,
    normalize_name,
    register,
    registry,
    save_component,
)

__all__ = [
    "GROUP", "Registry", "registry", "get", "create", "names", "register", "normalize_name",
    "UnknownComponentError", "PluginImportError", "save_component", "load_component", "read_config",
    "ArtifactError", "TamperedArtifactError",
]
