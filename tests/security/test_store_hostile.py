"""Embedding-store hostile input (issue 21, items 19-21 and 26): kills mid-replace, stores opened over other data,
filters on typed columns and of absurd size, duplicate and empty embeddings."""

from __future__ import annotations

import os
import signal

import numpy as np
import pandas as pd
import pytest

from virtualcell.store import EmbeddingStore, FilterError, StoreError, parse_filter


def _overwrite_killed_after(path, destination_part: str, *, before: bool = False) -> None:
    """In a child: overwrite key 'k' with 2s, SIGKILLed right after (or before) the rename into a name holding
    ``destination_part``."""
    real = os.replace

    def dying(source, destination):
        hit = destination_part in os.path.basename(str(destination))
        if hit and before:
            os.kill(os.getpid(), signal.SIGKILL)
        real(source, destination)
        if hit:
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = dying  # the child process only
    EmbeddingStore(path).write("k", np.full((3, 2), 2.0), overwrite=True)


# -- item 19: a kill between the two renames of an overwrite -------------------------------------------------------
def test_a_kill_between_the_renames_of_an_overwrite_loses_no_key(tmp_path, killed_at):
    path = tmp_path / "s.zarr"
    EmbeddingStore(path).write("k", np.ones((3, 2)))
    assert killed_at("never", lambda: _overwrite_killed_after(path, ".old-")) == -9
    assert not (path / "k").exists(), "the kill did not land between the renames"
    reader = EmbeddingStore(path, mode="r")  # a reader finds a whole version without repairing anything
    assert reader.keys() == ["k"] and reader.read("k").values.tolist() in ([[1.0, 1.0]] * 3, [[2.0, 2.0]] * 3)
    reopened = EmbeddingStore(path)  # the next read-write open puts the key back in place
    assert (path / "k").is_dir() and not list(path.glob(".k.*"))
    assert reopened.read("k").values.tolist() == reader.read("k").values.tolist()


@pytest.mark.parametrize("before", [True, False], ids=["new-version-unmarked", "new-version-ready"])
def test_a_kill_before_the_old_version_moves_keeps_it(tmp_path, killed_at, before):
    path = tmp_path / "s.zarr"
    EmbeddingStore(path).write("k", np.ones((3, 2)))
    assert killed_at("never", lambda: _overwrite_killed_after(path, ".ready", before=before)) == -9
    assert list(path.glob(".k.*")), "the kill left no new version aside"
    assert EmbeddingStore(path, mode="r").read("k").values.sum() == 6
    store = EmbeddingStore(path)
    assert store.read("k").values.sum() == 6 and not list(path.glob(".k.*"))
    store.write("k", np.zeros((3, 2)), overwrite=True)
    assert store.read("k").values.sum() == 0


# -- item 20: opening a store over existing data --------------------------------------------------------------------
def test_mode_w_does_not_delete_a_store_without_overwrite(tmp_path):
    path = tmp_path / "s.zarr"
    EmbeddingStore(path).write("k", np.ones((3, 2)))
    with pytest.raises(StoreError, match=r"already holds the embeddings \['k'\].*overwrite=True.*mode='a'"):
        EmbeddingStore(path, mode="w")
    assert EmbeddingStore(path, mode="r").keys() == ["k"]
    assert EmbeddingStore(path, mode="w", overwrite=True).keys() == []
    assert EmbeddingStore(tmp_path / "new.zarr", mode="w").keys() == []


def test_a_folder_of_user_files_is_not_made_a_store(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    for mode in ("a", "w", "r"):
        with pytest.raises(StoreError, match="folder of other files.*not an embedding store"):
            EmbeddingStore(folder, mode=mode, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    (tmp_path / "file.zarr").write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        EmbeddingStore(tmp_path / "file.zarr")
    empty = tmp_path / "empty"
    empty.mkdir()
    EmbeddingStore(empty).write("k", np.ones((1, 2)))  # an empty folder becomes a store


def test_a_foreign_zarr_group_is_refused(tmp_path):
    import zarr

    group = zarr.open_group(tmp_path / "other.zarr", mode="w", zarr_format=3)
    group.create_array("data", shape=(3,), dtype="f4")
    for mode in ("a", "w"):
        with pytest.raises(StoreError, match="not a virtualcell embedding store"):
            EmbeddingStore(tmp_path / "other.zarr", mode=mode, overwrite=True)
    assert "data" in zarr.open_group(tmp_path / "other.zarr", mode="r")


# -- item 21: filters on integer and boolean columns, and of absurd size ----------------------------------------------
@pytest.fixture
def typed(tmp_path):
    n = 40
    obs = pd.DataFrame({"cell_type": pd.Categorical(np.arange(n) % 4 + 3), "flag": np.arange(n) % 2 == 0,
                        "leiden": pd.Categorical(np.arange(n) % 3), "label": pd.Categorical(["a", "b"] * 20),
                        "count": np.arange(n)}, index=[f"c{i}" for i in range(n)])
    store = EmbeddingStore(tmp_path / "s.zarr")
    store.write("k", np.random.default_rng(0).normal(size=(n, 3)), obs=obs)
    return store, obs


@pytest.mark.parametrize("text, expected", [
    ("cell_type == 5", lambda o: o.cell_type == 5),
    ('cell_type == "5"', lambda o: o.cell_type == 5),
    ('flag == "True"', lambda o: o.flag),
    ("flag == false", lambda o: ~o.flag),
    ('leiden == "1"', lambda o: o.leiden == 1),
    ("leiden in [0, 1]", lambda o: o.leiden.isin([0, 1])),
    ('leiden in ["0", "1"]', lambda o: o.leiden.isin([0, 1])),
    ("leiden >= 1", lambda o: o.leiden.astype(int) >= 1),
    ('count == "3"', lambda o: o["count"] == 3),
    ("label == 5", lambda o: o.label == "x"),  # a number against text compares as text: no match, no crash
])
def test_filters_compare_by_the_column_type(typed, text, expected):
    store, obs = typed
    assert store.select("k", text).tolist() == np.flatnonzero(expected(obs)).tolist()


def test_in_agrees_with_equality_on_integer_categories(typed):
    store, _ = typed
    assert store.select("k", "leiden in [1]").tolist() == store.select("k", "leiden == 1").tolist() != []


@pytest.mark.parametrize("text, message", [
    ('flag == "maybe"', "holds true/false.*compare it with true or false"),
    ('leiden == "one"', "holds numbers.*compare it with a number"),
    ("label < 3", "has no order"),
])
def test_uncomparable_values_are_explained(typed, text, message):
    with pytest.raises(FilterError, match=message):
        typed[0].select("k", text)


def test_a_thousand_or_terms_and_deep_nesting(typed):
    store, obs = typed
    text = " | ".join(f"count == {i}" for i in range(1000))
    assert store.select("k", text).tolist() == list(range(len(obs)))
    assert store.select("k", " & ".join(["count >= 0"] * 1000)).size == len(obs)
    with pytest.raises(FilterError, match="deeper than 100 levels"):
        parse_filter("(" * 1000 + "count == 1" + ")" * 1000)
    with pytest.raises(FilterError, match="deeper than 100 levels"):
        parse_filter("~" * 1000 + "flag")
    assert store.select("k", "(" * 50 + "count == 1" + ")" * 50).tolist() == [1]


# -- item 26: --overwrite with --append, duplicate appends, 0-dimensional embeddings ---------------------------------
def test_overwrite_and_append_together_are_refused(tmp_path):
    store = EmbeddingStore(tmp_path / "s.zarr")
    store.write("k", np.ones((2, 2)))
    with pytest.raises(StoreError, match="choose one"):
        with store.writer("k", dim=2, append=True, overwrite=True):
            pass
    assert store.read("k").values.shape == (2, 2)


def test_appending_the_same_cells_twice_is_refused(tmp_path):
    store = EmbeddingStore(tmp_path / "s.zarr")
    obs = pd.DataFrame({"batch": ["a", "a"]}, index=["c1", "c2"])
    store.append("k", np.ones((2, 2)), obs=obs)
    with pytest.raises(StoreError, match=r"2 appended cells are already stored in 'k'.*rename them"):
        store.append("k", np.ones((2, 2)), obs=obs)
    with pytest.raises(StoreError, match=r"1 appended cells are already stored"):
        store.append("k", np.ones((2, 2)), obs=obs.rename(index={"c1": "c3"}))
    assert store.snapshot("k").n_rows == 2
    store.append("k", np.ones((2, 2)), obs=obs.rename(index=lambda name: f"again-{name}"))
    assert store.snapshot("k").n_rows == 4
    for _ in range(2):  # no obs: cells are named by their row numbers, never twice
        store.append("plain", np.ones((2, 2)))
    assert store.obs("plain").index.tolist() == ["0", "1", "2", "3"]


def test_a_zero_dimensional_embedding_is_refused(tmp_path, typed):
    store = EmbeddingStore(tmp_path / "z.zarr")
    for call in (lambda: store.write("k", np.zeros((3, 0))), lambda: store.append("k", np.zeros((3, 0)))):
        with pytest.raises(StoreError, match="0 dimensions"):
            call()
    with pytest.raises(StoreError, match="dim=0"):
        with store.writer("k", dim=0):
            pass
    assert store.keys() == []
    stored, _ = typed  # a store edited to claim 0 dimensions is refused before any search
    import json

    meta = stored.local_root / "k" / "values" / "zarr.json"
    data = json.loads(meta.read_text())
    data["shape"][1] = 0
    meta.write_text(json.dumps(data))
    with pytest.raises(StoreError, match="dimension = 0"):
        EmbeddingStore(stored.path, mode="r").nearest("k", np.zeros((1, 0)), k=1)
