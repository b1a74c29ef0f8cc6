"""What publishing and pulling share: the hub layout, name checks, the filesystem of a hub URL, listings.

```
<hub>/<name>/<version>.manifest.json     name, version, sha256 of every file, one content hash over
                                         them, and where the files are (``location``)
<hub>/<name>/.objects/<version>-<token>/ the artifact's files, uploaded under a prefix unique to
                                         one publish call
```
A version exists exactly when its manifest does (``publish.py`` writes it last, exclusively;
``pull.py`` checks every name in it). S3 endpoints other than AWS (MinIO, moto, Ceph) come from
the environment: ``AWS_ENDPOINT_URL`` (with ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``),
which botocore reads itself.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .names import UnsafeNameError, check_segment

__all__ = ["check_name", "check_version", "hub_fs", "is_local", "list_published", "read_nofollow",
           "OBJECTS", "MANIFEST_FORMAT"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._+-]*$")
MANIFEST_FORMAT = 2
OBJECTS = ".objects"


def check_name(name: str) -> str:
    check_segment(name, "instrument name")
    if not _NAME.match(name):
        raise UnsafeNameError(f"Invalid name {name!r}: lower-case letters, digits, '.', '_' and '-', "
                              "starting with a letter or digit.")
    return name


def check_version(version: str) -> str:
    check_segment(version, "version")
    if not _VERSION.match(version) or version == "latest":
        raise UnsafeNameError(f"Invalid version {version!r}: e.g. '1.0.0' (letters, digits, '.', '_', '+', '-'; "
                              "'latest' is reserved).")
    return version


def hub_fs(url: str):
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(url)
    except ImportError as error:
        raise ImportError(f"The hub {url!r} needs an fsspec driver that is not installed ({error}). For s3:// "
                          'hubs: pip install "virtualcell[s3]".') from None
    fs.invalidate_cache()  # listings cached by an earlier call would hide what others published since
    return fs, root.rstrip("/")


def is_local(fs) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def read_nofollow(path: Path) -> bytes:
    """A regular file's bytes, refusing a symbolic link swapped in after the folder was listed."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def list_published(hub: str) -> dict[str, list[str]]:
    """``{name: [versions...]}`` available at ``hub`` (only versions whose manifest exists)."""
    fs, root = hub_fs(hub)
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
