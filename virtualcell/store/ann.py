"""Approximate nearest neighbours: an HNSW graph built over a key and saved inside the store as bytes.

Three libraries implement the same graph (hnswlib, usearch, faiss-cpu's ``IndexHNSWFlat``);
``benchmarks/bench_store.py`` measures them side by side; :data:`PREFERENCE` orders them by that
measurement and the first one installed is the default. The index is serialised by the library's own
binary writer into a uint8 zarr array (``<key>/index/data``), never pickled, with attributes naming
the library, the parameters, the number of rows it covers, a sha256 of the bytes and the recall@k it
reached on stored cells (each left out of its own neighbours). ``search_ef`` is the smallest setting
that reached ``target_recall``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from typing import Any

import numpy as np

from .format import StoreError
from .knn import check_k, check_query, exact_knn
from .reader import ChunkReader

__all__ = ["build_index", "save_index", "load_index", "ApproximateIndex", "LIBRARIES", "PREFERENCE", "default_library"]

LIBRARIES = ("hnswlib", "usearch", "faiss")
#: the libraries in the order benchmarks/bench_store.py measured them (fastest at recall 0.99 first);
#: the default is the first one installed
PREFERENCE = ("usearch", "hnswlib", "faiss")
_MODULES = {"hnswlib": "hnswlib", "usearch": "usearch", "faiss": "faiss"}


def default_library() -> str:
    """The first of :data:`PREFERENCE` that is installed (an error naming the extra when none is)."""
    import importlib.util

    for library in PREFERENCE:
        if importlib.util.find_spec(_MODULES[library]) is not None:
            return library
    raise StoreError("No approximate-neighbour library is installed: pip install 'virtualcell[ann]'.")
INDEX_TYPE, INDEX_VERSION = "virtualcell.hnsw-index", "0.1.0"
EF_LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024)


@dataclasses.dataclass
class ApproximateIndex:
    """A loaded HNSW index: ``search(query [m, d], k) -> (row numbers [m, k], distances [m, k])``."""

    library: str
    metric: str
    index: Any
    n_rows: int
    ef: int
    info: dict

    def set_ef(self, ef: int) -> None:
        self.ef = int(ef)
        if self.library == "hnswlib":
            self.index.set_ef(self.ef)
        elif self.library == "usearch":
            self.index.expansion_search = self.ef
        else:
            self.index.hnsw.efSearch = self.ef

    def search(self, query, k: int, *, threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
        query = check_query(query, self.info["dim"], self.metric)
        k = check_k(k, self.n_rows)
        if self.ef < k:
            self.set_ef(k)
        if self.metric == "cosine":
            query = query / np.linalg.norm(query, axis=1, keepdims=True)
        if self.library == "hnswlib":
            rows, scores = self.index.knn_query(query, k=k, num_threads=threads or -1)
        elif self.library == "usearch":
            found = self.index.search(query, k, threads=threads)
            rows, scores = found.keys.reshape(len(query), k), found.distances.reshape(len(query), k)
        else:
            scores, rows = self.index.search(query, k)
        rows, scores = np.asarray(rows, dtype=np.int64), np.asarray(scores, dtype=np.float32)
        # all three return squared L2 on unit or raw vectors; cosine distance = ||a - b||² / 2 on unit vectors
        distances = np.sqrt(np.maximum(scores, 0)) if self.metric == "euclidean" else scores / 2
        return rows, distances.astype(np.float32)


def _new_index(library: str, dim: int, n: int, m: int, ef_construction: int, seed: int):
    if library == "hnswlib":
        import hnswlib

        index = hnswlib.Index(space="l2", dim=dim)
        index.init_index(max_elements=max(n, 1), ef_construction=ef_construction, M=m, random_seed=seed)
        return index
    if library == "usearch":
        from usearch.index import Index

        return Index(ndim=dim, metric="l2sq", dtype="f32", connectivity=m, expansion_add=ef_construction)
    if library == "faiss":
        import faiss

        index = faiss.IndexHNSWFlat(dim, m)
        index.hnsw.efConstruction = ef_construction
        return index
    raise StoreError(f"Unknown index library {library!r}; choose one of {list(LIBRARIES)}.")


def _add(library: str, index, values: np.ndarray, first_row: int, threads: int) -> None:
    rows = np.arange(first_row, first_row + len(values), dtype=np.int64)
    if library == "hnswlib":
        index.add_items(values, rows, num_threads=threads or -1)
    elif library == "usearch":
        index.add(rows, values, threads=threads)
    else:
        index.add(values)  # faiss numbers rows in insertion order


def _to_bytes(library: str, index) -> bytes:
    if library == "hnswlib":
        import os
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "index.bin")
            index.save_index(path)
            with open(path, "rb") as handle:
                return handle.read()
    if library == "usearch":
        return bytes(index.save())
    import faiss

    return faiss.serialize_index(index).tobytes()


def _from_bytes(library: str, data: bytes, dim: int, n: int):
    if library == "hnswlib":
        import os
        import tempfile

        import hnswlib

        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "index.bin")
            with open(path, "wb") as handle:
                handle.write(data)
            index = hnswlib.Index(space="l2", dim=dim)
            index.load_index(path, max_elements=max(n, 1))
            return index
    if library == "usearch":
        from usearch.index import Index

        return Index.restore(data)
    import faiss

    return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))


def build_index(reader: ChunkReader, *, library: str | None = None, metric: str = "euclidean", m: int = 16,
                ef_construction: int = 200, target_recall: float = 0.99, k: int = 10, n_check: int = 1000,
                threads: int = 0, seed: int = 0, progress: bool = True, name: str = "") -> ApproximateIndex:
    """Build an HNSW index over ``reader``'s committed rows and tune ``ef`` to ``target_recall`` (see :func:`save_index`).

    The recall@``k`` is measured on ``n_check`` stored cells (seeded sample) against exact search.
    ``threads`` other than 1 insert concurrently (0: all cores), so the graph, and its recall, can differ
    from run to run; ``threads=1`` builds the same index every time.
    """
    from tqdm.auto import tqdm

    library = library or default_library()
    if library not in LIBRARIES:
        raise StoreError(f"Unknown index library {library!r}; choose one of {list(LIBRARIES)}.")
    state = reader.state
    check_k(k, state.n_rows)
    check_query(np.ones((1, state.dim), np.float32), state.dim, metric)
    started = time.perf_counter()
    index = _new_index(library, state.dim, state.n_rows, m, ef_construction, seed)
    with tqdm(total=state.n_rows, desc=f"indexing {name}", unit="cells", disable=not progress) as bar:
        for start, values in reader.chunks(max(state.chunk_rows, 65536)):
            if metric == "cosine":
                values = values / np.maximum(np.linalg.norm(values, axis=1, keepdims=True), 1e-12)
            _add(library, index, np.ascontiguousarray(values, dtype=np.float32), start, threads)
            bar.update(len(values))
    build_seconds = time.perf_counter() - started
    info = {"library": library, "metric": metric, "dim": state.dim, "n_rows": state.n_rows, "m": m,
            "ef_construction": ef_construction, "build_seconds": build_seconds, "k": k, "seed": seed}
    loaded = ApproximateIndex(library, metric, index, state.n_rows, ef=EF_LADDER[0], info=info)
    info.update(_tune(reader, loaded, k=k, n_check=n_check, target_recall=target_recall, seed=seed))
    return loaded


def _tune(reader: ChunkReader, index: ApproximateIndex, *, k: int, n_check: int, target_recall: float,
          seed: int) -> dict:
    """The smallest ``ef`` of :data:`EF_LADDER` reaching ``target_recall`` on stored cells as queries.

    Each check cell is left out of its own neighbours (``k + 1`` searched, itself dropped), so finding
    itself, which is easy, does not flatter the recall of a new cell's query.
    """
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(reader.n_rows, size=min(n_check, reader.n_rows), replace=False))
    query = reader.take(rows)
    depth = min(k + 1, reader.n_rows)
    truth = _without_self(exact_knn(reader, query, depth, metric=index.metric)[0], rows, k)
    recall = 0.0
    for ef in EF_LADDER:
        index.set_ef(max(ef, depth))
        found = _without_self(index.search(query, depth)[0], rows, k)
        recall = float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found.tolist(), truth.tolist())]))
        if recall >= target_recall:
            break
    return {"search_ef": index.ef, "recall_at_k": recall, "target_recall": target_recall, "n_check": len(rows)}


def _without_self(found: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Each row's neighbours [m, k] other than the row itself (the last one dropped when it is absent)."""
    keep = found != rows[:, None]
    keep[keep.all(axis=1), -1] = False
    return found[keep].reshape(len(found), -1)[:, :k]


def save_index(group, index: ApproximateIndex) -> None:
    """Write ``index`` into the key's zarr ``group`` as ``index/data`` (uint8 bytes) with its attributes."""
    data = _to_bytes(index.library, index.index)
    if "index" in group:
        del group["index"]
    folder = group.create_group("index")
    array = folder.create_array("data", shape=(len(data),), dtype="uint8", chunks=(min(max(len(data), 1), 1 << 26),),
                                compressors=None)
    array[:] = np.frombuffer(data, dtype=np.uint8)
    folder.attrs.update({"encoding-type": INDEX_TYPE, "encoding-version": INDEX_VERSION, **index.info,
                         "sha256": hashlib.sha256(data).hexdigest()})


def load_index(group, reader: ChunkReader) -> ApproximateIndex:
    """The index saved in the key's zarr ``group``; refused when missing, stale (rows appended since) or not ours."""
    state, key = reader.state, reader.state.key
    if "index" not in group:
        raise StoreError(f"{key!r} has no approximate index; build one with store.build_index({key!r}).")
    info = dict(group["index"].attrs)
    if (info.get("encoding-type"), info.get("encoding-version")) != (INDEX_TYPE, INDEX_VERSION):
        raise StoreError(f"{key!r}'s index is encoded as {(info.get('encoding-type'), info.get('encoding-version'))}; "
                         "upgrade virtualcell or rebuild the index.")
    if info.get("library") not in LIBRARIES or info.get("metric") not in ("euclidean", "cosine"):
        raise StoreError(f"{key!r}'s index names library {info.get('library')!r}; this virtualcell knows {list(LIBRARIES)}.")
    if info.get("n_rows") != state.n_rows or info.get("dim") != state.dim:
        raise StoreError(f"{key!r}'s index covers {info.get('n_rows')} rows but {state.n_rows} are stored; rebuild "
                         f"it with store.build_index({key!r}).")
    data = group["index"]["data"]
    if data.ndim != 1 or data.dtype != np.uint8 or data.shape[0] > 64 * state.n_rows * (state.dim + 64) + (1 << 20):
        raise StoreError(f"{key!r}'s index bytes have an implausible shape {data.shape}; rebuild the index.")
    raw = data[:].tobytes()
    if hashlib.sha256(raw).hexdigest() != info.get("sha256"):
        raise StoreError(f"{key!r}'s index bytes do not match their recorded sha256; rebuild the index.")
    index = _from_bytes(info["library"], raw, state.dim, state.n_rows)
    loaded = ApproximateIndex(info["library"], info["metric"], index, state.n_rows, ef=EF_LADDER[0], info=info)
    loaded.set_ef(int(info.get("search_ef", 64)))
    return loaded
