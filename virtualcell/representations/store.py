"""The embedding store moved to :mod:`virtualcell.store` (format, append, filters, kNN, Dask embedding);
these names stay importable from here."""

from ..store import Embedding, EmbeddingStore, StoreError

__all__ = ["EmbeddingStore", "Embedding", "StoreError"]
