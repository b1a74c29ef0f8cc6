"""Pull a published instrument: every name in the manifest checked, every file verified, then one rename.

``pull`` refuses a manifest whose file names would leave the download folder (absolute paths,
``..``, separators, NUL), that was copied from another version, or that is too large; it downloads
into a temporary folder inside the cache, checks every sha256, and only then renames the folder
into place, so the cache never holds a partial or altered instrument. A cached copy is verified
again on every ``pull`` (every file's sha256, no file missing or added): one altered since it was
pulled is set aside and fetched again, with a warning.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any

from . import faults
from .atomic import alive, make_dir
from .errors import TamperedArtifactError
from .hashing import content_hash, sha256_file
from .hub import check_name, check_version, hub_fs, list_published
from .limits import MAX_JSON_BYTES, parse_json
from .names import UnsafeNameError, check_key, inside

__all__ = ["pull", "read_manifest", "published_status", "cache_problem"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def read_manifest(fs, manifest_path: str, hub: str) -> dict[str, Any]:
    if fs.isdir(manifest_path):
        raise TamperedArtifactError(f"{manifest_path} at {hub} is a folder, not a manifest file; the hub entry is "
                                    "damaged. Ask its publisher to publish the instrument again under a new version.")
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
    manifest = read_manifest(fs, manifest_path, hub)
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
    folded = {key.casefold() for key in files}
    folders = {key.casefold().rsplit("/", i)[0] for key in files for i in range(1, key.count("/") + 1)}
    clash = sorted(folded & folders) or (["(names equal but for case)"] if len(folded) < len(files) else [])
    if clash:
        raise TamperedArtifactError(f"{where} lists {clash[0]!r} twice or as both a file and a folder.")
    if content_hash(files) != manifest.get("content_hash"):
        raise TamperedArtifactError(f"{where} is inconsistent (content hash mismatch).")
    return manifest


def pull(hub: str, name: str, version: str = "latest", *, cache_dir: str | os.PathLike | None = None) -> Path:
    """Download ``name`` (a version, or the highest) from ``hub`` into the cache, verify it, return its folder."""
    check_name(name)
    fs, root = hub_fs(hub)
    if version == "latest":
        versions = list_published(hub).get(name)
        if not versions:
            raise FileNotFoundError(f"Nothing named {name!r} is published at {hub}; available: {sorted(list_published(hub))}.")
        version = versions[-1]
    check_version(version)
    manifest_path = f"{root}/{name}/{version}.manifest.json"
    if not fs.exists(manifest_path):
        known = list_published(hub).get(name, [])
        raise FileNotFoundError(f"{name} {version} is not published at {hub}; versions there: {known}.")
    manifest = _checked_manifest(fs, manifest_path, hub, name, version)
    cache = Path(cache_dir or Path(os.environ.get("VIRTUALCELL_CACHE", Path.home() / ".cache" / "virtualcell")))
    final = cache / "instruments" / name / f"{version}-{manifest['content_hash'][:16]}"
    if final.is_dir() or final.is_symlink():
        problem = cache_problem(final, manifest["files"])
        if problem is None:
            return final
        warnings.warn(f"The cached copy of {name} {version} at {final} was altered after it was pulled ({problem}); "
                      "fetching it again from the hub.", stacklevel=2)
        _set_aside(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    _clean_dead_pulls(final.parent)
    tmp = make_dir(final.parent / f".pull-{os.getpid()}-{uuid.uuid4().hex[:12]}")
    source = f"{root}/{name}/{manifest.get('location', version)}"
    try:
        _download(fs, source, manifest["files"], tmp, f"{name} {version} at {hub}")
        faults.checkpoint("pull:downloaded")
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():  # another pull of the same content finished first: use it
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _download(fs, source: str, files: dict[str, str], tmp: Path, what: str) -> None:
    """Fetch every file of the manifest into ``tmp`` and check its sha256."""
    for relative, digest in files.items():
        local = inside(tmp, relative, "file name in the manifest")
        local.parent.mkdir(parents=True, exist_ok=True)
        remote = f"{source}/{relative}"
        try:
            fs.get_file(remote, str(local))
        except IsADirectoryError:
            raise TamperedArtifactError(f"{relative} of {what} is a folder at the hub, where its manifest lists a "
                                        "file; the hub copy is damaged. Ask its publisher to publish it again under "
                                        "a new version.") from None
        if local.is_dir() or fs.isdir(remote):
            raise TamperedArtifactError(f"{relative} of {what} is a folder at the hub, where its manifest lists a "
                                        "file; the hub copy is damaged. Ask its publisher to publish it again.")
        if sha256_file(local, follow_symlinks=False) != digest:
            raise TamperedArtifactError(f"{relative} of {what} does not match its published sha256; the hub copy "
                                        "was altered. Refusing to use it.")


def cache_problem(folder: Path, files: dict[str, str]) -> str | None:
    """None when ``folder`` holds exactly the manifest's ``files`` (relative path -> sha256), as regular
    files with those hashes; else what differs."""
    if folder.is_symlink() or not folder.is_dir():
        return "it is not a folder"
    present = {}
    for path in folder.rglob("*"):
        if path.is_symlink() or not path.is_dir():
            present[path.relative_to(folder).as_posix()] = path
    missing = sorted(set(files) - set(present))
    if missing:
        return f"{missing[0]} is missing"
    added = sorted(set(present) - set(files))
    if added:
        return f"{added[0]} was added"
    for relative, digest in files.items():
        path = present[relative]
        if path.is_symlink() or not path.is_file():
            return f"{relative} is not a regular file"
        if sha256_file(path, follow_symlinks=False) != digest:
            return f"{relative} was modified"
    return None


def _set_aside(folder: Path) -> None:
    """Move an altered cached copy out of the way (one rename), then delete it."""
    stale = folder.parent / f".stale-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    try:
        os.rename(folder, stale)
    except FileNotFoundError:
        return                                  # another pull set it aside first
    if stale.is_symlink():
        stale.unlink()
    else:
        shutil.rmtree(stale, ignore_errors=True)


def published_status(hub: str) -> dict[str, dict[str, str | None]]:
    """``{name: {version: None if pull accepts its manifest, else why it refuses it}}`` at ``hub``."""
    fs, root = hub_fs(hub)
    out: dict[str, dict[str, str | None]] = {}
    for name, versions in list_published(hub).items():
        for version in versions:
            try:
                check_name(name)
                check_version(version)
                _checked_manifest(fs, f"{root}/{name}/{version}.manifest.json", hub, name, version)
                reason = None
            except (ValueError, OSError) as error:
                reason = str(error)
            out.setdefault(name, {})[version] = reason
    return out


def _clean_dead_pulls(folder: Path) -> None:
    for entry in folder.iterdir():
        parts = entry.name.split("-")
        if entry.name.startswith((".pull-", ".stale-")) and len(parts) >= 3 and parts[1].isdigit() and not alive(int(parts[1])):
            shutil.rmtree(entry, ignore_errors=True)
