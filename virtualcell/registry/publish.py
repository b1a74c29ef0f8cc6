"""Publish shared instruments (component or pipeline folders) to any fsspec URL: all or nothing, exactly one winner.

``publish`` uploads every file under its own staging prefix (``<name>/.objects/<version>-<token>/``,
see ``hub.py``), then creates the manifest with an exclusive create (``os.link`` on a local folder,
a conditional ``If-None-Match: *`` write on S3), so of two concurrent publishes of one version
exactly one wins and the other is told so (:class:`PublishConflictError`); a publish killed before
its manifest leaves nothing visible and can simply be retried. Pulling is in ``pull.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

from . import faults
from .errors import ArtifactError
from .hashing import content_hash, file_hashes
from .hub import OBJECTS, MANIFEST_FORMAT, check_name, check_version, hub_fs, is_local, list_published, read_nofollow
from .pull import pull, read_manifest

__all__ = ["publish", "pull", "list_published", "content_hash", "PublishConflictError"]


class PublishConflictError(FileExistsError):
    """Another publish of the same name and version won (versions are immutable)."""


def _create_exclusive(fs, path: str, data: bytes) -> None:
    """Write ``path`` only if it does not exist (``FileExistsError`` otherwise); readers never see it half-written."""
    if is_local(fs):
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
        try:
            fs.pipe_file(path, data, mode="create")  # S3: PUT with If-None-Match: *
        except (TypeError, NotImplementedError):  # a backend without exclusive create: check, write, read back
            if fs.exists(path):
                raise FileExistsError(path) from None
            fs.pipe_file(path, data)


def publish(path: str | os.PathLike, hub: str, name: str, version: str, *, metadata: dict[str, Any] | None = None) -> str:
    """Copy the artifact folder ``path`` to ``hub`` as ``name`` ``version``; returns its content hash.

    ``hub`` is any fsspec URL (a local folder, ``memory://hub``, ``s3://bucket/hub``). All or nothing:
    the version appears only once every file is uploaded; if another publish of the same version
    wins, this one raises :class:`PublishConflictError` and removes what it uploaded.
    """
    folder = Path(path)
    check_name(name)
    check_version(version)
    if not (folder / "config.json").is_file() and not (folder / "pipeline.json").is_file():
        raise ArtifactError(f"{folder} is not a component or pipeline folder (no config.json / pipeline.json).")
    _verify(folder)
    hashes = file_hashes(folder)  # refuses symlinks and special files
    fs, root = hub_fs(hub)
    manifest_path = f"{root}/{name}/{version}.manifest.json"
    if fs.exists(manifest_path):
        raise FileExistsError(f"{name} {version} is already published at {hub}; versions are immutable, publish a new one.")
    location = f"{OBJECTS}/{version}-{uuid.uuid4().hex}"
    staging = f"{root}/{name}/{location}"
    try:
        for relative, digest in hashes.items():
            data = read_nofollow(folder / relative)
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
        fs.invalidate_cache()
        if _exists_quietly(fs, manifest_path):  # the winner collected our half-done upload
            raise PublishConflictError(f"{name} {version} was published at {hub} by someone else while this "
                                       "publish was uploading; versions are immutable, publish a new one.") from None
        raise
    faults.checkpoint("publish:manifest-written")
    fs.invalidate_cache()
    if read_manifest(fs, manifest_path, hub).get("location") != location:  # a store without exclusive create
        _remove(fs, staging)
        raise PublishConflictError(f"{name} {version} was published at {hub} by someone else at the same time.")
    _collect_garbage(fs, root, name, version, keep=location)
    return manifest["content_hash"]


def _verify(folder: Path) -> None:
    """Refuse to publish an artifact that would not pass its own checks on load (edited files, swapped parts),
    whatever the pipeline kind (an ensemble's members are checked like any part, and as pipelines themselves)."""
    if (folder / "config.json").is_file():
        from .artifact import read_config

        read_config(folder)
        return
    from .pipeline_format import verify_folder

    verify_folder(folder)


def _exists_quietly(fs, path: str) -> bool:
    try:
        return fs.exists(path)
    except Exception:  # noqa: BLE001 - the original error is the one to report
        return False


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
