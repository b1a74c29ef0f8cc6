"""``save(overwrite=True)`` replaces only artifacts, keeps the old one until the new one is whole,
recovers from a crash on the next open, and writes with the umask's permissions (issue #12)."""

import os
import shutil
import subprocess
import sys

import pytest
import torch

from virtualcell.registry import ArtifactError, load_component


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_overwrite_refuses_a_folder_of_user_files(tmp_path, encoders):
    """Before: save(overwrite=True) deleted any existing folder, user files included."""
    target = tmp_path / "results"
    target.mkdir()
    (target / "thesis.tex").write_text("three years of work")
    with pytest.raises(ArtifactError, match="not a virtualcell artifact"):
        encoders[0].save(target, overwrite=True)
    assert (target / "thesis.tex").read_text() == "three years of work"
    assert _hidden(tmp_path) == []


def test_overwrite_refuses_an_artifact_holding_extra_files(tmp_path, artifact, encoders):
    (artifact / "my_notes.md").write_text("keep me")
    with pytest.raises(ArtifactError, match=r"not part of the artifact: \['my_notes.md'\]"):
        encoders[1].save(artifact, overwrite=True)
    assert (artifact / "my_notes.md").read_text() == "keep me"


def test_overwrite_refuses_a_file_or_a_symlink(tmp_path, encoders):
    file = tmp_path / "data.h5ad"
    file.write_bytes(b"precious")
    with pytest.raises(ArtifactError, match="not a folder"):
        encoders[0].save(file, overwrite=True)
    assert file.read_bytes() == b"precious"
    elsewhere = encoders[0].save(tmp_path / "elsewhere")
    os.symlink(elsewhere, tmp_path / "link")
    with pytest.raises(ArtifactError, match="symbolic link"):
        encoders[1].save(tmp_path / "link", overwrite=True)


def test_overwrite_replaces_an_artifact(tmp_path, artifact, encoders, fitted_pipelines):
    a, b, x = encoders
    b.save(artifact, overwrite=True)
    torch.testing.assert_close(load_component(artifact).encode(x), b.encode(x))
    pipe = fitted_pipelines[0].save(tmp_path / "pipe")
    fitted_pipelines[1].save(pipe, overwrite=True)
    assert _hidden(tmp_path) == []


def test_a_backup_left_by_a_crash_is_restored_on_open(tmp_path, artifact, encoders):
    """The worst point of a replace: the old folder moved aside, the new one not yet in place."""
    a, _, x = encoders
    backup = tmp_path / f".pca.old-{_dead_pid()}-abc"
    os.rename(artifact, backup)
    (tmp_path / f".pca.new-{_dead_pid()}-def").mkdir()
    torch.testing.assert_close(load_component(artifact).encode(x), a.encode(x))
    assert _hidden(tmp_path) == []


def test_leftovers_of_dead_writers_are_cleaned_and_live_ones_kept(tmp_path, encoders):
    for i in range(5):
        (tmp_path / f".pca.new-{_dead_pid()}-{i}").mkdir()
    live = tmp_path / f".pca.new-{os.getppid()}-live"  # our parent is alive
    live.mkdir()
    encoders[0].save(tmp_path / "pca")
    assert _hidden(tmp_path) == [live.name]


@pytest.mark.parametrize("umask,dirs,files", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600), (0o002, 0o775, 0o664)])
def test_artifacts_get_the_umask_permissions(tmp_path, encoders, fitted_pipelines, umask, dirs, files):
    """Before: every artifact folder was 0700 (tempfile.mkdtemp), whatever the umask."""
    previous = os.umask(umask)
    try:
        encoders[0].save(tmp_path / "pca")
        fitted_pipelines[0].save(tmp_path / "pipe")
    finally:
        os.umask(previous)
    for root in (tmp_path / "pca", tmp_path / "pipe"):
        for path in [root, *root.rglob("*")]:
            expected = dirs if path.is_dir() else files
            assert path.stat().st_mode & 0o777 == expected, f"{path}: {oct(path.stat().st_mode & 0o777)}"


def test_pulled_instruments_get_the_umask_permissions(tmp_path, artifact):
    from virtualcell.registry.publish import publish, pull

    publish(artifact, str(tmp_path / "hub"), "pca", "1.0")
    previous = os.umask(0o022)
    try:
        folder = pull(str(tmp_path / "hub"), "pca", cache_dir=tmp_path / "cache")
    finally:
        os.umask(previous)
    assert folder.stat().st_mode & 0o777 == 0o755
    assert {p.stat().st_mode & 0o777 for p in folder.iterdir()} == {0o644}


def test_a_failed_pipeline_save_keeps_the_old_one(tmp_path, fitted_pipelines, monkeypatch):
    import virtualcell as vc

    path = fitted_pipelines[0].save(tmp_path / "pipe")
    before = {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()}
    monkeypatch.setattr(type(fitted_pipelines[1]), "_card", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        fitted_pipelines[1].save(path, overwrite=True)
    assert {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()} == before
    assert _hidden(tmp_path) == []
    vc.PerturbationPipeline.load(path)
    shutil.rmtree(path)


def test_concurrent_overwrites_leave_one_whole_artifact_and_no_leftovers(tmp_path, encoders):
    import threading

    a, b, x = encoders
    path = a.save(tmp_path / "pca")
    barrier, errors = threading.Barrier(6), []

    def run(i):
        barrier.wait()
        for _ in range(3):
            try:
                (a if i % 2 else b).save(path, overwrite=True)
            except FileExistsError as error:  # lost a race: told so, nothing lost
                errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    z = load_component(path).encode(x)
    assert torch.allclose(z, a.encode(x)) or torch.allclose(z, b.encode(x))
    assert _hidden(tmp_path) == []
    assert all("another writer" in str(e) for e in errors)


def test_overwrite_refuses_a_pipeline_whose_component_folder_holds_user_files(tmp_path, fitted_pipelines):
    path = fitted_pipelines[0].save(tmp_path / "pipe")
    (path / "encoder" / "lab_notes.txt").write_text("keep me")
    with pytest.raises(ArtifactError, match=r"part 'encoder'.*lab_notes.txt"):
        fitted_pipelines[1].save(path, overwrite=True)
    assert (path / "encoder" / "lab_notes.txt").read_text() == "keep me"
