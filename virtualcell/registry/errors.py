"""The errors of the artifact format (no imports, so every registry module can raise them)."""

from __future__ import annotations

__all__ = ["ArtifactError", "TamperedArtifactError"]


class ArtifactError(ValueError):
    """An artifact folder that cannot be read (or must not be written)."""


class TamperedArtifactError(ArtifactError):
    """A file of an artifact changed after it was saved, or a folder was swapped for another."""
