"""A hostile hub manifest cannot make ``pull`` read or write outside its folders (issue #12).

Before: ``pull`` joined manifest keys to its cache folder unchecked, so ``../x`` or an absolute key
was written outside the cache, and the file stayed there even when the hash check failed.
"""

import hashlib
import json
import os

import pytest

from virtualcell.registry import TamperedArtifactError
from virtualcell.registry.publish import content_hash, list_published, publish, pull

PAYLOAD = b"not what you think"
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def _hostile_hub(tmp_path, files, *, name="evil", version="1.0", location=None, **extra):
    """A hub folder whose manifest lists ``files`` (key -> bytes), each placed where a naive puller would read it."""
    hub = tmp_path / "hub"
    (hub / name).mkdir(parents=True, exist_ok=True)
    hashes = {key: hashlib.sha256(data).hexdigest() for key, data in files.items()}
    manifest = {"name": name, "version": version, "files": hashes, "content_hash": content_hash(hashes), "metadata": {}}
    if location is not None:
        manifest["location"] = location
    manifest.update(extra)
    (hub / name / f"{version}.manifest.json").write_text(json.dumps(manifest))
    for key, data in files.items():
        source = os.path.normpath(os.path.join(hub, name, location or version, key.lstrip("/")))
        try:  # best effort: some hostile keys cannot even be created
            os.makedirs(os.path.dirname(source), exist_ok=True)
            with open(source, "wb") as handle:
                handle.write(data)
        except (OSError, ValueError):
            pass
    return hub


def _files_outside(root, allowed):
    return sorted(str(p) for p in root.rglob("*") if p.is_file() and not any(a in p.parents for a in allowed))


@pytest.mark.parametrize("key", [
    "../escape.txt", "../../escape.txt", "../../../escape.txt", "a/../../escape.txt", "a/../../../escape.txt",
    "..\\..\\escape.txt", "a\\..\\..\\escape.txt", "nul\0byte.txt", "x" * 300, "a/" + "y" * 300, "a//b", "./a", "",
    "a/./b", "a/..", "new\nline.txt",
], ids=lambda k: repr(k)[:30])
def test_hostile_manifest_keys_are_refused_and_nothing_is_written(tmp_path, key):
    hub = _hostile_hub(tmp_path, {"config.json": b"{}", key: PAYLOAD})
    before = _files_outside(tmp_path, [hub])
    with pytest.raises(TamperedArtifactError, match="refused|Unsafe"):
        pull(str(hub), "evil", "1.0", cache_dir=tmp_path / "cache")
    assert _files_outside(tmp_path, [hub]) == before


def test_absolute_key_is_refused_and_the_target_untouched(tmp_path):
    target = tmp_path / "victim" / "authorized_keys"
    target.parent.mkdir()
    target.write_bytes(b"original")
    hub = _hostile_hub(tmp_path, {"config.json": b"{}", str(target): PAYLOAD})
    with pytest.raises(TamperedArtifactError, match="absolute"):
        pull(str(hub), "evil", "1.0", cache_dir=tmp_path / "cache")
    assert target.read_bytes() == b"original"
    assert _files_outside(tmp_path, [hub, target.parent]) == []


def test_traversal_with_a_wrong_hash_leaves_nothing(tmp_path):
    """Before: the file written outside stayed after the hash check failed."""
    hub = _hostile_hub(tmp_path, {"../../escape.txt": PAYLOAD})
    manifest = hub / "evil" / "1.0.manifest.json"
    spec = json.loads(manifest.read_text())
    spec["files"] = {"../../escape.txt": "0" * 64}
    spec["content_hash"] = content_hash(spec["files"])
    manifest.write_text(json.dumps(spec))
    before = _files_outside(tmp_path, [hub])
    with pytest.raises(TamperedArtifactError):
        pull(str(hub), "evil", "1.0", cache_dir=tmp_path / "cache")
    assert _files_outside(tmp_path, [hub]) == before


@pytest.mark.parametrize("location", ["../../elsewhere", "/etc", "a/../../..", ".."])
def test_hostile_location_is_refused(tmp_path, location):
    hub = _hostile_hub(tmp_path, {"config.json": PAYLOAD}, location="1.0")
    manifest = hub / "evil" / "1.0.manifest.json"
    manifest.write_text(manifest.read_text().replace('"location": "1.0"', json.dumps({"location": location})[1:-1]))
    with pytest.raises(TamperedArtifactError, match="location"):
        pull(str(hub), "evil", "1.0", cache_dir=tmp_path / "cache")


def test_keys_colliding_as_file_and_folder_are_refused(tmp_path):
    hub = _hostile_hub(tmp_path, {"a": PAYLOAD, "a/b": PAYLOAD})
    with pytest.raises(TamperedArtifactError, match="twice or as both"):
        pull(str(hub), "evil", "1.0", cache_dir=tmp_path / "cache")


def test_a_manifest_copied_from_another_version_is_refused(tmp_path, artifact):
    hub = tmp_path / "hub"
    publish(artifact, str(hub), "pca", "1.0")
    (hub / "pca" / "2.0.manifest.json").write_text((hub / "pca" / "1.0.manifest.json").read_text())
    with pytest.raises(TamperedArtifactError, match="copied from another version"):
        pull(str(hub), "pca", "2.0", cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("name", ["../x", "/abs", "a/../../b", "..\\x", "a\0b", "x" * 300, "A", ".hidden"])
def test_hostile_instrument_names_are_refused_everywhere(tmp_path, artifact, name):
    hub = str(tmp_path / "hub")
    with pytest.raises(ValueError, match="Unsafe|Invalid name"):
        publish(artifact, hub, name, "1.0")
    with pytest.raises(ValueError, match="Unsafe|Invalid name"):
        pull(hub, name, "1.0", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "x").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("version", ["../1", "/1", "1/../../2", "1\\2", "1\0", "9" * 300, "latest", ""])
def test_hostile_versions_are_refused_everywhere(tmp_path, artifact, version):
    hub = str(tmp_path / "hub")
    with pytest.raises(ValueError, match="Unsafe|Invalid version"):
        publish(artifact, hub, "pca", version)
    publish(artifact, hub, "pca", "1.0")
    if version != "latest":
        with pytest.raises(ValueError, match="Unsafe|Invalid version"):
            pull(hub, "pca", version, cache_dir=tmp_path / "cache")
    assert list_published(hub) == {"pca": ["1.0"]}


def test_oversized_manifest_is_refused_before_reading(tmp_path, artifact):
    hub = tmp_path / "hub"
    publish(artifact, str(hub), "pca", "1.0")
    with open(hub / "pca" / "2.0.manifest.json", "wb") as handle:
        handle.truncate(65 << 20)  # sparse: 65 MiB on paper, nothing on disk
    with pytest.raises(TamperedArtifactError, match="more than a manifest can be"):
        pull(str(hub), "pca", "2.0", cache_dir=tmp_path / "cache")
