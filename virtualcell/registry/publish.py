"""Publish and pull shared instruments (component or pipeline folders) through any fsspec URL.

```
<hub>/<name>/<version>.manifest.json    name, version, sha256 of every file, one content hash over
                                        them, and where the files are (``location``)
<hub>/<name>/.objects/<version>-<token>/ the artifact's files, uploaded under a prefix unique to
                                        one publish call
```
A version exists exactly when its manifest does. ``publish`` uploads every file under its own
staging prefix first, then creates the manifest with an exclusive create (``os.link`` on a local
folder, a conditional ``If-None-Match: *`` write on S3), so of two concurrent publishes of one
version exactly one wins and the other is told so; a publish killed before its manifest leaves
nothing visible and can simply be retried. ``pull`` checks every name in the manifest (no
absolute paths, no ``..``), downloads into a temporary folder inside the cache, verifies every
sha256, and only then renames the folder into place.

S3 endpoints other than AWS (MinIO, moto, Ceph) come from the environment: ``AWS_ENDPOINT_URL``
(with ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``), which botocore reads itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from . import faults
from .atomic import make_dir
from .errors import ArtifactError, TamperedArtifactError
from .hashing import content_hash, file_hashes
from .limits import MAX_JSON_BYTES, parse_json
from .names import UnsafeNameError, check_key, check_segment, inside

__all__ = ["publish", "pull", "list_published", "content_hash", "PublishConflictError"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._+-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MANIFEST_FORMAT = 2
OBJECTS = ".objects"


class PublishConflictError(FileExistsError):
    """Another publish of the same name and version won (versions are immutable)."""


def _check_name(name: str) -> str:
    check_segment(name, "instrument name")
    if not _NAME.match(name):
        raise UnsafeNameError(f"Invalid name {name!r}: lower-case letters, digits, '.', '_' and '-', "
                              "starting with a letter or digit.")
    return name


def _check_version(version: str) -> str:
    check_segment(version, "version")
    if not _VERSION.match(version) or version == "latest":
        raise UnsafeNameError(f"Invalid version {version!r}: e.g. '1.0.0' (letters, digits, '.', '_', '+', '-'; "
                              "'latest' is reserved).")
    return version


def _fs(url: str):
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(url)
    except ImportError as error:
        raise ImportError(f"The hub {url!r} needs an fsspec driver that is not installed ({error}). For s3:// "
                          'hubs: pip install "virtualcell[s3]".') from None
    fs.invalidate_cache()  # listings cached by an earlier call would hide what others published since
    return fs, root.rstrip("/")


def _is_local(fs) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def _read_nofollow(path: Path) -> bytes:
    """A regular file's bytes, refusing a symbolic link swapped in after the folder was listed."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def _create_exclusive(fs, path: str, data: bytes) -> None:
    """Write ``path`` only if it does not exist (``FileExistsError`` otherwise); readers never see it half-written."""
    if _is_local(fs):
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)  # atomic, and fails if the name exists
        finally:
            os.unlink(tmp)
    else:
        fs.pipe_file(path, data, mode="create")  # S3: PUT with If-None-Match: *


def publish(path: str | os.PathLike, hub: str, name: str, version: str, *, metadata: dict[str, Any] | None = None) -> str:
    """Copy the artifact folder ``path`` to ``hub`` as ``name`` ``version``; returns its content hash.

    ``hub`` is any fsspec URL (a local folder, ``memory://hub``, ``s3://bucket/hub``). All or nothing:
    the version appears only once every file is uploaded; if another publish of the same version
    wins, this one raises :class:`PublishConflictError` and removes what it uploaded.
    """
    folder = Path(path)
    _check_name(name)
    _check_version(version)
    if not (folder / "config.json").is_file() and not (folder / "pipeline.json").is_file():
        raise ArtifactError(f"{folder} is not a component or pipeline folder (no config.json / pipeline.json).")
    if (folder / "config.json").is_file():
        from .artifact import read_config

        read_config(folder)  # refuse to publish an artifact that would not load
    hashes = file_hashes(folder)  # refuses symlinks and special files
    fs, root = _fs(hub)
    manifest_path = f"{root}/{name}/{version}.manifest.json"
    if fs.exists(manifest_path):
        raise FileExistsError(f"{name} {version} is already published at {hub}; versions are immutable, publish a new one.")
    location = f"{OBJECTS}/{version}-{uuid.uuid4().hex}"
    staging = f"{root}/{name}/{location}"
    try:
        for relative, digest in hashes.items():
            data = _read_nofollow(folder / relative)
            if hashlib.sha256(data).hexdigest() != digest:
                raise ArtifactError(f"{folder / relative} changed while it was being published; publish again.")
            destination = f"{staging}/{relative}"
            fs.makedirs(destination.rsplit("/", 1)[0], exist_ok=True)
            fs.pipe_file(destination, data)
            faults.checkpoint("publish:uploading")
        faults.checkpoint("publish:uploaded")
        manifest = {"format_version": MANIFEST_FORMAT, "name": name, "version": version, "files": hashes,
                    "content_hash": content_hash(hashes), "location": location, "metadata": metadata or {}}
        _create_exclusive(fs, manifest_path, json.dumps(manifest, indent=2, sort_keys=True).encode())
    except FileExistsError:
        _remove(fs, staging)
        raise PublishConflictError(f"{name} {version} was published at {hub} by someone else while this publish was "
                                   "uploading; versions are immutable, publish a new one.") from None
    except BaseException:
        _remove(fs, staging)
        raise
    faults.checkpoint("publish:manifest-written")
    fs.invalidate_cache()
    if _read_manifest(fs, manifest_path, hub).get("location") != location:  # a store without exclusive create
        _remove(fs, staging)
        raise PublishConflictError(f"{name} {version} was published at {hub} by someone else at the same time.")
    _collect_garbage(fs, root, name, version, keep=location)
    return manifest["content_hash"]


def _remove(fs, path: str) -> None:
    try:
        fs.rm(path, recursive=True)
    except (FileNotFoundError, OSError):
        pass


def _collect_garbage(fs, root: str, name: str, version: str, keep: str) -> None:
    """Delete staging prefixes of ``version`` other than ``keep`` (publishes that crashed or lost)."""
    try:
        entries = fs.ls(f"{root}/{name}/{OBJECTS}", detail=False)
    except (FileNotFoundError, OSError):
        return
    for entry in entries:
        base = entry.rstrip("/").rsplit("/", 1)[-1]
        if base.startswith(f"{version}-") and f"{OBJECTS}/{base}" != keep and len(base) == len(version) + 33:
            _remove(fs, entry)


def list_published(hub: str) -> dict[str, list[str]]:
    """``{name: [versions...]}`` available at ``hub`` (only versions whose manifest exists)."""
    fs, root = _fs(hub)
    if not fs.exists(root):
        return {}
    out: dict[str, list[str]] = {}
    for entry in fs.ls(root, detail=False):
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        if not _NAME.match(name) or not fs.isdir(entry):
            continue
        versions = [p.rsplit("/", 1)[-1][: -len(".manifest.json")] for p in fs.ls(entry, detail=False)
                    if p.endswith(".manifest.json")]
        versions = [v for v in versions if _VERSION.match(v)]
        if versions:
            out[name] = sorted(versions, key=_version_key)
    return out


def _version_key(version: str) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[._+-]", version))


def _read_manifest(fs, manifest_path: str, hub: str) -> dict[str, Any]:
    size = fs.size(manifest_path)
    if size is not None and size > MAX_JSON_BYTES:
        raise TamperedArtifactError(f"{manifest_path} at {hub} is {size} bytes, more than a manifest can be; refusing it.")
    with fs.open(manifest_path, "rb") as handle:
        data = handle.read(MAX_JSON_BYTES + 1)
    manifest = parse_json(data, f"the manifest {manifest_path} at {hub}")
    if not isinstance(manifest, dict):
        raise TamperedArtifactError(f"The manifest {manifest_path} at {hub} is not a JSON object.")
    return manifest


def _checked_manifest(fs, manifest_path: str, hub: str, name: str, version: str) -> dict[str, Any]:
    """The manifest, with every name in it checked: it cannot make ``pull`` read or write outside its folders."""
    manifest = _read_manifest(fs, manifest_path, hub)
    where = f"The manifest of {name} {version} at {hub}"
    if manifest.get("name", name) != name or manifest.get("version", version) != version:
        raise TamperedArtifactError(f"{where} describes {manifest.get('name')!r} {manifest.get('version')!r}; "
                                    "it was copied from another version. Refusing it.")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files or not all(isinstance(v, str) and _SHA256.match(v) for v in files.values()):
        raise TamperedArtifactError(f"{where} has no valid file list (relative path -> sha256).")
    try:
        for key in files:
            check_key(key, "file name in the manifest")
        check_key(manifest.get("location", version), "location in the manifest")
    except UnsafeNameError as error:
        raise TamperedArtifactError(f"{where} is refused: {error}") from None
    folded = {}
    for key in files:
        if key.casefold() in folded or any(other.startswith(key + "/") for other in files):
            raise TamperedArtifactError(f"{where} lists {key!r} twice or as both a file and a folder.")
        folded[key.casefold()] = key
    if content_hash(files) != manifest.get("content_hash"):
        raise TamperedArtifactError(f"{where} is inconsistent (content hash mismatch).")
    return manifest


def pull(hub: str, name: str, version: str = "latest", *, cache_dir: str | os.PathLike | None = None) -> Path:
    """Download ``name`` (a version, or the highest) from ``hub`` into the cache, verify it, return its folder."""
    _check_name(name)
    fs, root = _fs(hub)
    if version == "latest":
        versions = list_published(hub).get(name)
        if not versions:
            raise FileNotFoundError(f"Nothing named {name!r} is published at {hub}; available: {sorted(list_published(hub))}.")
        version = versions[-1]
    _check_version(version)
    manifest_path = f"{root}/{name}/{version}.manifest.json"
    if not fs.exists(manifest_path):
        known = list_published(hub).get(name, [])
        raise FileNotFoundError(f"{name} {version} is not published at {hub}; versions there: {known}.")
    manifest = _checked_manifest(fs, manifest_path, hub, name, version)
    cache = Path(cache_dir or Path(os.environ.get("VIRTUALCELL_CACHE", Path.home() / ".cache" / "virtualcell")))
    final = cache / "instruments" / name / f"{version}-{manifest['content_hash'][:16]}"
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    _clean_dead_pulls(final.parent)
    tmp = make_dir(final.parent / f".pull-{os.getpid()}-{uuid.uuid4().hex[:12]}")
    source = f"{root}/{name}/{manifest.get('location', version)}"
    try:
        for relative, digest in manifest["files"].items():
            local = inside(tmp, relative, "file name in the manifest")
            local.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(f"{source}/{relative}", str(local))
            if local.is_symlink() or hashlib.sha256(_read_nofollow(local)).hexdigest() != digest:
                raise TamperedArtifactError(f"{relative} of {name} {version} at {hub} does not match its published "
                                            "sha256; the hub copy was altered. Refusing to use it.")
        faults.checkpoint("pull:downloaded")
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():  # another pull of the same content finished first: use it
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _clean_dead_pulls(folder: Path) -> None:
    from .atomic import _alive

    for entry in folder.iterdir():
        parts = entry.name.split("-")
        if entry.name.startswith(".pull-") and len(parts) >= 3 and parts[1].isdigit() and not _alive(int(parts[1])):
            shutil.rmtree(entry, ignore_errors=True)
