"""Pull a published instrument: every name in the manifest checked, every file verified, then one rename.

``pull`` refuses a manifest whose file names would leave the download folder (absolute paths,
``..``, separators, NUL), that was copied from another version, or that is too large; it downloads
into a temporary folder inside the cache, checks every sha256, and only then renames the folder
into place, so the cache never holds a partial or altered instrument.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from . import faults
from .atomic import make_dir
from .errors import TamperedArtifactError
from .hashing import content_hash, sha256_file
from .hub import check_name, check_version, hub_fs, list_published
from .limits import MAX_JSON_BYTES, parse_json
from .names import UnsafeNameError, check_key, inside

__all__ = ["pull", "read_manifest"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def read_manifest(fs, manifest_path: str, hub: str) -> dict[str, Any]:
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
            if sha256_file(local, follow_symlinks=False) != digest:
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
