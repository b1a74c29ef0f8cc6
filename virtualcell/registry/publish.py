"""Publish and pull shared instruments (component or pipeline folders) through any fsspec URL.

```
<hub>/<name>/<version>/   the artifact's files, unchanged
<hub>/<name>/<version>.manifest.json   sha256 of every file + one content hash over them
```
Versions are immutable: publishing an existing version is refused. Pulling verifies every file
against the manifest before anything is loaded, and caches by content hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .artifact import ArtifactError, TamperedArtifactError, sha256_file

__all__ = ["publish", "pull", "list_published", "content_hash"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._+-]*$")


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def content_hash(file_hashes: dict[str, str]) -> str:
    """One sha256 over the sorted (relative path, file sha256) pairs."""
    return hashlib.sha256("".join(f"{k}\0{v}\n" for k, v in sorted(file_hashes.items())).encode()).hexdigest()


def _fs(url: str):
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    return fs, root.rstrip("/")


def publish(path: str | os.PathLike, hub: str, name: str, version: str, *, metadata: dict[str, Any] | None = None) -> str:
    """Copy the artifact folder ``path`` to ``hub/name/version``; returns its content hash.

    ``hub`` is any fsspec URL (a local folder, ``memory://hub``, ``s3://bucket/hub``).
    """
    folder = Path(path)
    if not (folder / "config.json").exists() and not (folder / "pipeline.json").exists():
        raise ArtifactError(f"{folder} is not a component or pipeline folder (no config.json / pipeline.json).")
    if not _NAME.match(name):
        raise ValueError(f"Invalid name {name!r}: lower-case letters, digits, '.', '_' and '-'.")
    if not _VERSION.match(version) or version == "latest":
        raise ValueError(f"Invalid version {version!r}: e.g. '1.0.0' ('latest' is reserved).")
    fs, root = _fs(hub)
    target, manifest_path = f"{root}/{name}/{version}", f"{root}/{name}/{version}.manifest.json"
    if fs.exists(manifest_path) or fs.exists(target):
        raise FileExistsError(f"{name} {version} is already published at {hub}; versions are immutable, publish a new one.")
    hashes = {str(p.relative_to(folder)): sha256_file(p) for p in _files(folder)}
    for relative in hashes:
        destination = f"{target}/{relative}"
        fs.makedirs(destination.rsplit("/", 1)[0], exist_ok=True)
        fs.put_file(str(folder / relative), destination)
    manifest = {"name": name, "version": version, "files": hashes, "content_hash": content_hash(hashes),
                "metadata": metadata or {}}
    with fs.open(manifest_path, "w") as handle:  # written last: a version exists once its manifest does
        handle.write(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest["content_hash"]


def list_published(hub: str) -> dict[str, list[str]]:
    """``{name: [versions...]}`` available at ``hub`` (only versions whose manifest exists)."""
    fs, root = _fs(hub)
    if not fs.exists(root):
        return {}
    out: dict[str, list[str]] = {}
    for entry in fs.ls(root, detail=False):
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        versions = [p.rsplit("/", 1)[-1][: -len(".manifest.json")] for p in fs.ls(entry, detail=False)
                    if p.endswith(".manifest.json")]
        if versions:
            out[name] = sorted(versions, key=_version_key)
    return out


def _version_key(version: str) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[._+-]", version))


def pull(hub: str, name: str, version: str = "latest", *, cache_dir: str | os.PathLike | None = None) -> Path:
    """Download ``name`` (a version, or the highest) from ``hub`` into the cache, verify it, return its folder."""
    fs, root = _fs(hub)
    if version == "latest":
        versions = list_published(hub).get(name)
        if not versions:
            raise FileNotFoundError(f"Nothing named {name!r} is published at {hub}; available: {sorted(list_published(hub))}.")
        version = versions[-1]
    manifest_path = f"{root}/{name}/{version}.manifest.json"
    if not fs.exists(manifest_path):
        known = list_published(hub).get(name, [])
        raise FileNotFoundError(f"{name} {version} is not published at {hub}; versions there: {known}.")
    with fs.open(manifest_path, "r") as handle:
        manifest = json.loads(handle.read())
    if content_hash(manifest["files"]) != manifest["content_hash"]:
        raise TamperedArtifactError(f"The manifest of {name} {version} at {hub} is inconsistent (content hash mismatch).")
    cache = Path(cache_dir or Path(os.environ.get("VIRTUALCELL_CACHE", Path.home() / ".cache" / "virtualcell")))
    final = cache / "instruments" / name / f"{version}-{manifest['content_hash'][:16]}"
    if final.exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".pull-", dir=final.parent))
    try:
        for relative, digest in manifest["files"].items():
            local = tmp / relative
            local.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(f"{root}/{name}/{version}/{relative}", str(local))
            if sha256_file(local) != digest:
                raise TamperedArtifactError(f"{relative} of {name} {version} at {hub} does not match its published "
                                            "sha256; the hub copy was altered. Refusing to use it.")
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
