"""Registry (entry points), artifact format, model cards, publishing."""

from .artifact import ArtifactError, TamperedArtifactError, load_component, read_config, save_component
from .registry import (
    GROUP,
    PluginImportError,
    Registry,
    UnknownComponentError,
    create,
    get,
    names,
    normalize_name,
    register,
    registry,
)

__all__ = [
    "GROUP", "Registry", "registry", "get", "create", "names", "register", "normalize_name",
    "UnknownComponentError", "PluginImportError", "save_component", "load_component", "read_config",
    "ArtifactError", "TamperedArtifactError",
]
