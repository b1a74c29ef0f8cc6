"""Appends: readers always see a consistent row count, during appends, with many readers, after a crash."""

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pandas as pd
import pytest

from virtualcell.store import EmbeddingStore, StoreError


def _batch(first: int, n: int, dim: int = 4):
    """Rows whose values all equal their row number, and obs naming them."""
    values = np.repeat(np.arange(first, first + n, dtype=np.float32)[:, None], dim, axis=1)
    obs = pd.DataFrame({"batch": pd.Categorical([f"b{first}"] * n), "row": np.arange(first, first + n)},
                       index=[f"cell{i}" for i in range(first, first + n)])
    return values, obs


def _check_consistent(path: str, key: str) -> int:
    store = EmbeddingStore(path, mode="r")
    state = store.snapshot(key)
    values, obs = store.values(key, state=state), store.obs(key, state=state)
    assert len(values) == len(obs) == state.n_rows
    assert np.array_equal(values[:, 0], np.arange(state.n_rows)), "a reader saw rows that were not all written"
    assert obs["row"].tolist() == list(range(state.n_rows))
    return state.n_rows


def test_append_grows_and_keeps_types(tmp_path):
    store = EmbeddingStore(tmp_path / "s.zarr")
    for first, n in [(0, 5), (5, 7), (12, 1)]:
        store.append("k", *_batch(first, n)[:1], obs=_batch(first, n)[1], chunk_rows=4)
    assert _check_consistent(str(tmp_path / "s.zarr"), "k") == 13
    obs = store.obs("k")
    assert isinstance(obs["batch"].dtype, pd.CategoricalDtype) and list(obs["batch"].cat.categories) == ["b0", "b5", "b12"]
    with pytest.raises(StoreError, match="appended obs has columns"):
        store.append("k", np.zeros((1, 4)), obs=pd.DataFrame({"other": [1]}, index=["x"]))
    with pytest.raises(StoreError, match="has 3 dimensions but the key stores 4"):
        store.append("k", np.zeros((1, 3)))


def _reader(path, stop_at, seen):
    n = 0
    while n < stop_at:
        try:
            n = _check_consistent(path, "k")
        except StoreError as error:  # the store or the key may not exist yet
            assert "No embedding" in str(error), error
        seen.put(n)


def test_many_concurrent_readers_see_consistent_counts(tmp_path):
    path = str(tmp_path / "s.zarr")
    context = multiprocessing.get_context("spawn")
    seen = context.Queue()
    batches = [(i * 6, 6) for i in range(12)]
    readers = [context.Process(target=_reader, args=(path, 72, seen)) for _ in range(3)]
    threads = [threading.Thread(target=_reader, args=(path, 72, seen_t := __import__("queue").Queue())) for _ in range(2)]
    for worker in readers + threads:
        worker.start()
    store = EmbeddingStore(path)
    for first, n in batches:
        values, obs = _batch(first, n)
        store.append("k", values, obs=obs, chunk_rows=5)
    for worker in readers + threads:
        worker.join(timeout=120)
    assert all(p.exitcode == 0 for p in readers)
    counts = set()
    while not seen.empty():
        counts.add(seen.get())
    assert counts <= {0} | {first + n for first, n in batches} and 72 in counts
    assert not any(t.is_alive() for t in threads) and seen_t.get_nowait() is not None


def test_a_writer_killed_before_its_commit_changes_nothing(tmp_path):
    path = tmp_path / "s.zarr"
    store = EmbeddingStore(path)
    store.append("k", _batch(0, 10)[0], obs=_batch(0, 10)[1], chunk_rows=4)
    script = textwrap.dedent(f"""
        import os, signal, numpy as np, pandas as pd
        from virtualcell.store import EmbeddingStore
        from virtualcell.store import append
        original = append.KeyWriter.commit
        def die(self, obs, provenance=None):  # the rows are written; die before the commit
            os.kill(os.getpid(), signal.SIGKILL)
        append.KeyWriter.commit = die
        EmbeddingStore({str(path)!r}).append("k", np.full((7, 4), 99.0), obs=pd.DataFrame({{"batch": pd.Categorical(["x"] * 7), "row": range(7)}}, index=[f"z{{i}}" for i in range(7)]))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert result.returncode == -signal.SIGKILL
    assert EmbeddingStore(path).group("k")["values"].shape[0] == 17  # the dead writer's rows are on disk...
    assert _check_consistent(str(path), "k") == 10                    # ...but invisible
    store.append("k", _batch(10, 3)[0], obs=_batch(10, 3)[1])
    assert _check_consistent(str(path), "k") == 13


def test_a_crash_between_the_two_renames_keeps_the_old_version(tmp_path):
    path = tmp_path / "s.zarr"
    store = EmbeddingStore(path)
    store.write("k", np.ones((3, 2)))
    os.replace(path / "k", path / ".k.old-deadbeef")  # what a crash after the first rename of an old writer leaves
    assert "k" in store and store.read("k").values.sum() == 6  # readers read the old version where it lies
    store.write("other", np.zeros((1, 2)))           # an unrelated writer does not touch it
    with store.writer("k", append=True, dim=2) as writer:  # the next writer of k restores it first
        assert writer.state.n_rows == 3
    assert store.read("k").values.sum() == 6 and not list(path.glob(".k.*"))
