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


# -- issue 21 item 25: the cache is verified on every pull; published lists what pull accepts -----------------
def _pulled(tmp_path, artifact):
    hub = tmp_path / "hub"
    publish(artifact, str(hub), "pca", "1.0")
    folder = pull(str(hub), "pca", "1.0", cache_dir=tmp_path / "cache")
    return hub, folder


@pytest.mark.parametrize("damage", ["modify", "delete", "add", "symlink"])
def test_an_altered_cached_copy_is_fetched_again(tmp_path, artifact, damage):
    """Before: pull returned the cached folder unchecked, and load then refused it with 're-pull it'."""
    from virtualcell.registry import load_component

    hub, folder = _pulled(tmp_path, artifact)
    weights = folder / "weights.safetensors"
    original = weights.read_bytes()
    if damage == "modify":
        weights.write_bytes(original[:-1] + b"\x07")
    elif damage == "delete":
        weights.unlink()
    elif damage == "add":
        (folder / "extra.py").write_text("print('hi')")
    else:
        weights.unlink()
        weights.symlink_to(tmp_path / "elsewhere")
    with pytest.warns(UserWarning, match="altered after it was pulled"):
        again = pull(str(hub), "pca", "1.0", cache_dir=tmp_path / "cache")
    assert again == folder and weights.read_bytes() == original and not (folder / "extra.py").exists()
    load_component(again)
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == [], "nothing left aside"


def test_an_intact_cached_copy_is_reused_without_a_warning(tmp_path, artifact, recwarn):
    hub, folder = _pulled(tmp_path, artifact)
    stamp = (folder / "weights.safetensors").stat().st_mtime_ns
    assert pull(str(hub), "pca", "1.0", cache_dir=tmp_path / "cache") == folder
    assert (folder / "weights.safetensors").stat().st_mtime_ns == stamp
    assert not [w for w in recwarn if "altered" in str(w.message)]


def test_cli_pull_never_exits_0_on_a_corrupt_result(tmp_path, artifact):
    from typer.testing import CliRunner

    from virtualcell.cli import app

    hub, folder = _pulled(tmp_path, artifact)
    (folder / "weights.safetensors").write_bytes(b"altered in the cache")
    location = json.loads((hub / "pca" / "1.0.manifest.json").read_text())["location"]
    (hub / "pca" / location / "weights.safetensors").write_bytes(b"altered at the hub too")
    result = CliRunner().invoke(app, ["pull", "pca", "--hub", str(hub), "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 2 and "does not match its published sha256" in result.output, result.output
    assert not folder.exists(), "the altered cached copy is not left for load to trip on"
    (hub / "pca" / location / "weights.safetensors").unlink()
    publish(artifact, str(hub), "pca", "1.1")
    folder = pull(str(hub), "pca", "1.1", cache_dir=tmp_path / "cache")
    (folder / "config.json").write_text("{}")
    result = CliRunner().invoke(app, ["pull", "pca", "--hub", str(hub), "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0 and "warning: The cached copy of pca 1.1" in result.output, result.output
    assert result.stdout.strip() == str(folder)


def test_a_hub_entry_that_is_a_folder_is_a_clear_error(tmp_path, artifact):
    """Before: IsADirectoryError."""
    hub = tmp_path / "hub"
    publish(artifact, str(hub), "pca", "1.0")
    (hub / "pca" / "2.0.manifest.json").mkdir()
    with pytest.raises(TamperedArtifactError, match="is a folder, not a manifest file"):
        pull(str(hub), "pca", "2.0", cache_dir=tmp_path / "cache")
    location = json.loads((hub / "pca" / "1.0.manifest.json").read_text())["location"]
    weights = hub / "pca" / location / "weights.safetensors"
    weights.unlink()
    weights.mkdir()
    with pytest.raises(TamperedArtifactError, match="is a folder at the hub"):
        pull(str(hub), "pca", "1.0", cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache" / "instruments" / "pca").glob("1.0-*"))


def test_published_lists_only_versions_pull_accepts(tmp_path, artifact):
    """Before: `published` listed versions whose manifest pull refuses."""
    from typer.testing import CliRunner

    from virtualcell.cli import app
    from virtualcell.registry.pull import published_status

    hub = tmp_path / "hub"
    publish(artifact, str(hub), "pca", "1.0")
    (hub / "pca" / "2.0.manifest.json").write_text((hub / "pca" / "1.0.manifest.json").read_text())   # a copy
    (hub / "pca" / "3.0.manifest.json").write_text("{bad")
    status = published_status(str(hub))["pca"]
    assert status["1.0"] is None and "copied from another version" in status["2.0"] and status["3.0"]
    result = CliRunner().invoke(app, ["published", "--hub", str(hub)])
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ["pca\t1.0"], result.stdout
    assert "pca 2.0 is listed" in result.stderr and "pull refuses it" in result.stderr
