"""The package's input error, on the ground floor so every floor (``train/`` included) can raise it."""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """Input data that cannot be used as given; the message says how to fix it."""
