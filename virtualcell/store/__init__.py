"""The embedding store grown up: zarr v3 format, append, metadata filters, exact and approximate kNN,
streaming and Dask embedding of atlases (one file each)."""

from .embedding_store import EmbeddingStore
from .filter import FilterError, parse_filter
from .format import Embedding, Snapshot, StoreError

__all__ = ["EmbeddingStore", "Embedding", "Snapshot", "StoreError", "FilterError", "parse_filter"]
