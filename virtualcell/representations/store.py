"""Deprecated: the embedding store moved to :mod:`virtualcell.store` (``virtualcell.EmbeddingStore``); this path
is kept for one release."""

import warnings

from ..store import Embedding, EmbeddingStore, StoreError

__all__ = ["EmbeddingStore", "Embedding", "StoreError"]

warnings.warn("virtualcell.representations.store moved to virtualcell.store; import EmbeddingStore from there "
              "(or as virtualcell.EmbeddingStore); this path goes away in the next release.",
              DeprecationWarning, stacklevel=2)
