"""The hub on a real S3 server (moto's server mode on loopback) and on a local folder: round trips,
concurrent publishes of one version (threads and processes: exactly one wins), killed publishes,
hostile manifests, and the CLI with ``AWS_ENDPOINT_URL`` (issue #12)."""

import hashlib
import json
import multiprocessing
import os
import signal
import threading

import pytest
import torch

from virtualcell.registry import TamperedArtifactError, load_component
from virtualcell.registry.publish import content_hash, list_published, publish, pull

N_WRITERS = 6


def _race(hub, folders, version="1.0"):
    """Publish ``folders[i]`` from thread i, all released at once; ``{i: digest or exception name}``."""
    barrier, out = threading.Barrier(len(folders)), {}

    def run(i):
        barrier.wait()
        try:
            out[i] = publish(folders[i], hub, "pca", version)
        except Exception as error:  # noqa: BLE001 - checked by the caller
            out[i] = type(error).__name__ if isinstance(error, FileExistsError) else repr(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(folders))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return out


def _distinct_artifacts(tmp_path, encoders, n):
    a, b, x = encoders
    return [(a if i % 2 == 0 else b).save(tmp_path / f"art{i}") for i in range(n)]


def _check_one_winner(results, hub, folders, cache):
    winners = {i: d for i, d in results.items() if len(d) == 64}
    assert len(winners) == 1, results
    # a loser either lost the exclusive create or found the winner's manifest already there
    assert all(r in ("PublishConflictError", "FileExistsError") for i, r in results.items() if i not in winners), results
    (i, digest), = winners.items()
    pulled = pull(hub, "pca", "1.0", cache_dir=cache)
    assert pulled.name == f"1.0-{digest[:16]}"
    for name in ("weights.safetensors", "config.json"):
        assert (pulled / name).read_bytes() == (folders[i] / name).read_bytes()


def test_publish_pull_list_on_s3(s3_bucket, tmp_path, artifact, encoders):
    hub = f"{s3_bucket}/hub"
    digest = publish(artifact, hub, "pca", "1.0.0")
    publish(artifact, hub, "pca", "1.10.0")
    assert list_published(hub) == {"pca": ["1.0.0", "1.10.0"]}
    folder = pull(hub, "pca", cache_dir=tmp_path / "cache")
    assert folder.name.startswith("1.10.0-")
    assert pull(hub, "pca", "1.0.0", cache_dir=tmp_path / "cache").name == f"1.0.0-{digest[:16]}"
    torch.testing.assert_close(load_component(folder).encode(encoders[2]), encoders[0].encode(encoders[2]))
    with pytest.raises(FileExistsError, match="immutable"):
        publish(artifact, hub, "pca", "1.0.0")


def test_concurrent_publishes_on_s3_threads_exactly_one_wins(s3_bucket, tmp_path, encoders):
    """Before: both callers were told they won in 8 of 22 rounds."""
    hub = f"{s3_bucket}/hub"
    folders = _distinct_artifacts(tmp_path, encoders, N_WRITERS)
    _check_one_winner(_race(hub, folders), hub, folders, tmp_path / "cache")
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.invalidate_cache()
    objects = fs.ls(f"{hub[5:]}/pca/.objects", detail=False)
    assert len(objects) == 1, objects  # the losers removed their uploads


@pytest.mark.parametrize("where", ["folder", "memory"])
def test_concurrent_publishes_threads_exactly_one_wins(tmp_path, encoders, where):
    hub = str(tmp_path / "hub") if where == "folder" else f"memory://race-{tmp_path.name}"
    folders = _distinct_artifacts(tmp_path, encoders, N_WRITERS)
    _check_one_winner(_race(hub, folders), hub, folders, tmp_path / "cache")


def _publish_in_process(folder, hub, barrier, results):
    barrier.wait()
    try:
        results.put((folder, publish(folder, hub, "pca", "1.0")))
    except Exception as error:  # noqa: BLE001 - reported to the parent, which checks the type
        results.put((folder, type(error).__name__ if isinstance(error, FileExistsError) else repr(error)))


def _race_processes(hub, folders):
    """One OS process per writer (forked after the imports, so the race is not lost to start-up time)."""
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(len(folders)), context.Queue()
    workers = [context.Process(target=_publish_in_process, args=(f, hub, barrier, results)) for f in folders]
    [w.start() for w in workers]
    out = dict(results.get(timeout=60) for _ in workers)
    [w.join() for w in workers]
    return {folders.index(f): r for f, r in out.items()}


@pytest.mark.parametrize("where", ["s3", "folder"])
def test_concurrent_publishes_processes_exactly_one_wins(request, tmp_path, encoders, where):
    hub = f"{request.getfixturevalue('s3_bucket')}/hub" if where == "s3" else str(tmp_path / "hub")
    folders = _distinct_artifacts(tmp_path, encoders, 4)
    _check_one_winner(_race_processes(hub, folders), hub, folders, tmp_path / "cache")


def test_killed_publish_on_s3_is_invisible_and_retryable(s3_bucket, tmp_path, artifact, killed_at):
    """Before: a killed publish left a version that publish called published and pull called missing."""
    hub = f"{s3_bucket}/hub"
    assert killed_at("publish:uploaded", lambda: publish(artifact, hub, "pca", "1.0")) == -signal.SIGKILL
    assert list_published(hub) == {}
    with pytest.raises(FileNotFoundError):
        pull(hub, "pca", "1.0", cache_dir=tmp_path / "cache")
    publish(artifact, hub, "pca", "1.0")
    load_component(pull(hub, "pca", "1.0", cache_dir=tmp_path / "cache"))


def test_hostile_manifest_on_s3_is_refused(s3_bucket, tmp_path):
    import s3fs

    fs = s3fs.S3FileSystem()
    payload = b"owned"
    files = {"../../escape.txt": hashlib.sha256(payload).hexdigest()}
    root = f"{s3_bucket[5:]}/hub/evil"
    fs.pipe_file(f"{root}/1.0.manifest.json", json.dumps(
        {"name": "evil", "version": "1.0", "files": files, "content_hash": content_hash(files)}).encode())
    fs.pipe_file(f"{s3_bucket[5:]}/escape.txt", payload)
    with pytest.raises(TamperedArtifactError, match="Unsafe file name"):
        pull(f"{s3_bucket}/hub", "evil", "1.0", cache_dir=tmp_path / "cache")
    assert not [p for p in tmp_path.rglob("escape.txt")]


def test_altered_s3_copy_is_refused(s3_bucket, tmp_path, artifact):
    import s3fs

    hub = f"{s3_bucket}/hub"
    publish(artifact, hub, "pca", "1.0")
    fs = s3fs.S3FileSystem()
    fs.invalidate_cache()
    manifest = json.loads(fs.cat_file(f"{hub[5:]}/pca/1.0.manifest.json"))
    fs.pipe_file(f"{hub[5:]}/pca/{manifest['location']}/weights.safetensors", b"\0" * 64)
    with pytest.raises(TamperedArtifactError, match="does not match its published sha256"):
        pull(hub, "pca", "1.0", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "instruments" / "pca").exists() or not [
        p for p in (tmp_path / "cache" / "instruments" / "pca").iterdir()]


def test_cli_publish_and_pull_on_s3_with_endpoint_from_the_environment(s3_bucket, tmp_path, artifact):
    from typer.testing import CliRunner

    from virtualcell.cli import app

    assert os.environ["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    hub = f"{s3_bucket}/hub"
    runner = CliRunner()
    result = runner.invoke(app, ["publish", str(artifact), "--hub", hub, "--name", "pca", "--version", "1.0"])
    assert result.exit_code == 0, result.output
    assert "published pca 1.0" in result.output
    result = runner.invoke(app, ["pull", "pca", "--hub", hub, "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    load_component(result.output.strip().splitlines()[-1])
    result = runner.invoke(app, ["publish", str(artifact), "--hub", hub, "--name", "pca", "--version", "1.0"])
    assert result.exit_code != 0 and "immutable" in result.output
    result = runner.invoke(app, ["published", "--hub", hub])
    assert result.exit_code == 0 and result.output.strip() == "pca\t1.0", result.output
    result = runner.invoke(app, ["pull", "../etc", "--hub", hub, "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code != 0 and "Unsafe" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("where", ["s3", "folder", "memory"])
def test_the_manifest_is_created_exclusively(request, tmp_path, encoders, monkeypatch, where):
    """A publish that passed the 'already published?' check and then lost the race is told so, and its
    manifest does not overwrite the winner's (S3: a conditional If-None-Match write; folder: os.link)."""
    from virtualcell.registry import faults

    hub = {"s3": lambda: f"{request.getfixturevalue('s3_bucket')}/hub", "folder": lambda: str(tmp_path / "hub"),
           "memory": lambda: f"memory://exclusive-{tmp_path.name}"}[where]()
    slow, fast = _distinct_artifacts(tmp_path, encoders, 2)
    uploaded, go = threading.Event(), threading.Event()

    def pause_the_slow_one(step):
        if step == "publish:uploaded" and threading.current_thread().name == "slow":
            uploaded.set()
            go.wait(30)

    monkeypatch.setattr(faults, "checkpoint", pause_the_slow_one)
    outcome = {}

    def run_slow():
        try:
            outcome["slow"] = publish(slow, hub, "pca", "1.0")
        except FileExistsError as error:
            outcome["slow"] = error

    thread = threading.Thread(target=run_slow, name="slow")
    thread.start()
    assert uploaded.wait(30)
    winner = publish(fast, hub, "pca", "1.0")
    go.set()
    thread.join()
    assert type(outcome["slow"]).__name__ == "PublishConflictError", outcome
    assert "by someone else" in str(outcome["slow"])
    assert pull(hub, "pca", "1.0", cache_dir=tmp_path / "cache").name == f"1.0-{winner[:16]}"
