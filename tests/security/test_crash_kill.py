"""SIGKILL at every named step of a replace or a publish, and at random moments (issue #12).

Each test runs the write in a forked child that is killed, then checks the invariant in the parent:
a path holds the old or the new artifact, never neither; a version is either published (pull works)
or not (pull says missing, publish can retry); leftovers are gone after the next save or open.
"""

import os
import random
import signal
import time

import pytest
import torch

import virtualcell as vc
from virtualcell.registry import load_component
from virtualcell.registry.publish import list_published, publish, pull

REPLACE_STEPS = ["replace:written", "replace:moved-old-aside", "replace:moved-new-in"]


def _hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _which(path, encoders):
    a, b, x = encoders
    z = load_component(path).encode(x)
    return "a" if torch.allclose(z, a.encode(x)) else "b" if torch.allclose(z, b.encode(x)) else "?"


@pytest.mark.parametrize("step", REPLACE_STEPS)
def test_component_replace_killed_at_each_step_leaves_old_or_new(tmp_path, encoders, killed_at, step):
    a, b, _ = encoders
    path = a.save(tmp_path / "pca")
    assert killed_at(step, lambda: b.save(path, overwrite=True)) == -signal.SIGKILL
    assert _which(path, encoders) == ("a" if step != "replace:moved-new-in" else "b")
    assert _hidden(tmp_path) == []  # the open above recovered and cleaned
    b.save(path, overwrite=True)
    assert _which(path, encoders) == "b"


@pytest.mark.parametrize("step", REPLACE_STEPS)
def test_pipeline_replace_killed_at_each_step_leaves_old_or_new(tmp_path, fitted_pipelines, killed_at, step):
    first, second = fitted_pipelines
    path = first.save(tmp_path / "pipe")
    assert killed_at(step, lambda: second.save(path, overwrite=True)) == -signal.SIGKILL
    loaded = vc.PerturbationPipeline.load(path)
    expected = second if step == "replace:moved-new-in" else first
    torch.testing.assert_close(loaded.encoder.components, expected.encoder.components)
    assert _hidden(tmp_path) == []


def test_killed_just_before_the_new_folder_moves_in(tmp_path, encoders, killed_at):
    """The worst point, found without our checkpoints: kill on the rename that puts the new folder at the path.

    Before: the old folder was already renamed away, so nothing was left at the path.
    """
    a, b, _ = encoders
    path = a.save(tmp_path / "pca")

    def save_and_die_on_the_final_rename():
        real_rename, real_replace = os.rename, os.replace

        def guard(real):
            def move(src, dst, *args, **kwargs):
                if os.fspath(dst) == os.fspath(path) and ".old-" not in os.fspath(src):
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(src, dst, *args, **kwargs)
            return move

        os.rename, os.replace = guard(real_rename), guard(real_replace)
        b.save(path, overwrite=True)

    assert killed_at("never", save_and_die_on_the_final_rename) == -signal.SIGKILL
    assert _which(path, encoders) == "a"
    assert _hidden(tmp_path) == []


@pytest.mark.parametrize("step", ["publish:uploading", "publish:uploaded"])
def test_publish_killed_before_its_manifest_is_invisible_and_retryable(tmp_path, artifact, killed_at, step):
    hub = str(tmp_path / "hub")
    assert killed_at(step, lambda: publish(artifact, hub, "pca", "1.0")) == -signal.SIGKILL
    assert list_published(hub) == {}
    with pytest.raises(FileNotFoundError, match="not published|Nothing named"):
        pull(hub, "pca", "1.0", cache_dir=tmp_path / "cache")
    digest = publish(artifact, hub, "pca", "1.0")  # the retry wins and collects the crashed upload
    assert pull(hub, "pca", "1.0", cache_dir=tmp_path / "cache").name == f"1.0-{digest[:16]}"
    assert len(os.listdir(tmp_path / "hub" / "pca" / ".objects")) == 1


def test_publish_killed_after_its_manifest_is_published(tmp_path, artifact, killed_at):
    hub = str(tmp_path / "hub")
    assert killed_at("publish:manifest-written", lambda: publish(artifact, hub, "pca", "1.0")) == -signal.SIGKILL
    assert list_published(hub) == {"pca": ["1.0"]}
    load_component(pull(hub, "pca", "1.0", cache_dir=tmp_path / "cache"))
    with pytest.raises(FileExistsError, match="immutable"):
        publish(artifact, hub, "pca", "1.0")


def test_pull_killed_before_its_rename_leaves_no_cache_entry(tmp_path, artifact, killed_at):
    hub = str(tmp_path / "hub")
    publish(artifact, hub, "pca", "1.0")
    assert killed_at("pull:downloaded", lambda: pull(hub, "pca", "1.0", cache_dir=tmp_path / "cache")) == -signal.SIGKILL
    folder = pull(hub, "pca", "1.0", cache_dir=tmp_path / "cache")
    load_component(folder)
    assert _hidden(folder.parent) == []


def _kill_at_random(loop, seconds: float) -> None:
    """Fork a child running ``loop()`` forever; SIGKILL it after ``seconds``."""
    pid = os.fork()
    if pid == 0:
        try:
            torch.set_num_threads(1)
            loop()
        finally:
            os._exit(0)
    time.sleep(seconds)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


@pytest.mark.parametrize("seed", range(6))
def test_saves_killed_at_random_moments_leave_a_whole_artifact(tmp_path, encoders, seed):
    a, b, _ = encoders
    path = a.save(tmp_path / "pca")

    def loop():
        while True:
            b.save(path, overwrite=True)
            a.save(path, overwrite=True)

    _kill_at_random(loop, random.Random(seed).uniform(0.05, 0.4))
    assert _which(path, encoders) in ("a", "b")
    assert _hidden(tmp_path) == []


@pytest.mark.parametrize("seed", range(6))
def test_publishes_killed_at_random_moments_are_all_or_nothing(tmp_path, artifact, seed):
    hub = str(tmp_path / "hub")

    def loop():
        for i in range(10_000):
            publish(artifact, hub, "pca", f"1.{i}")

    _kill_at_random(loop, random.Random(seed).uniform(0.05, 0.4))
    published = list_published(hub).get("pca", [])
    for version in published:  # every version that exists pulls and loads
        load_component(pull(hub, "pca", version, cache_dir=tmp_path / "cache"))
    retry = f"1.{len(published)}"  # the one being written when killed: invisible, and a retry succeeds
    with pytest.raises(FileNotFoundError):
        pull(hub, "pca", retry, cache_dir=tmp_path / "cache")
    publish(artifact, hub, "pca", retry)
    load_component(pull(hub, "pca", retry, cache_dir=tmp_path / "cache"))
