"""One check for every name that becomes part of a path, and one resolver that keeps paths inside a root.

Names come from users (hub names, versions, pipeline roles) and from files other people wrote
(hub manifests, ``config.json`` checksums, ``pipeline.json``). Every one of them goes through
:func:`check_segment` (one path component) or :func:`check_key` (a ``/``-separated relative path)
before it is joined to a folder or URL, and :func:`inside` re-checks the joined path.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

__all__ = ["UnsafeNameError", "check_segment", "check_key", "inside", "MAX_SEGMENT_BYTES", "MAX_KEY_BYTES"]

MAX_SEGMENT_BYTES = 255   # the usual file-name limit (ext4, APFS, NTFS)
MAX_KEY_BYTES = 1024      # an S3 key's limit


class UnsafeNameError(ValueError):
    """A name that could escape its folder (``..``, absolute, separators, NUL, control characters, too long)."""


def check_segment(name: object, what: str = "name") -> str:
    """``name`` if it is one safe path component, else :class:`UnsafeNameError` saying why.

    Refused: non-strings, empty, ``.``/``..``, ``/`` or ``\\``, NUL and other control or line-separator
    characters, leading/trailing spaces, more than 255 UTF-8 bytes.
    """
    if not isinstance(name, str):
        raise UnsafeNameError(f"{what} must be a string; got {type(name).__name__} {name!r}.")
    problem = None
    if not name:
        problem = "it is empty"
    elif name in (".", ".."):
        problem = "'.' and '..' name a folder relative to another"
    elif "/" in name or "\\" in name:
        problem = "it contains a path separator ('/' or '\\')"
    elif any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        problem = "it contains a control, format or line-separator character (NUL, newline, ...)"
    elif name != name.strip():
        problem = "it starts or ends with white space"
    elif len(name.encode("utf-8")) > MAX_SEGMENT_BYTES:
        problem = f"it is longer than {MAX_SEGMENT_BYTES} bytes"
    elif ":" in name and os.name == "nt":
        problem = "it contains ':' (a drive or stream on Windows)"
    if problem:
        raise UnsafeNameError(f"Unsafe {what} {name[:80]!r}: {problem}. Use letters, digits, '.', '_' and '-'.")
    return name


def check_key(key: object, what: str = "file name") -> str:
    """``key`` if it is a relative ``/``-separated path of safe segments (a manifest or checksum key)."""
    if not isinstance(key, str):
        raise UnsafeNameError(f"{what} must be a string; got {type(key).__name__} {key!r}.")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise UnsafeNameError(f"Unsafe {what} {key[:80]!r}...: longer than {MAX_KEY_BYTES} bytes.")
    if key.startswith("/") or (len(key) > 1 and key[1] == ":"):
        raise UnsafeNameError(f"Unsafe {what} {key[:80]!r}: it is absolute; only paths inside the folder are allowed.")
    for part in key.split("/"):
        check_segment(part, what)
    return key


def inside(root: str | os.PathLike, key: str, what: str = "file name") -> Path:
    """``root / key`` after :func:`check_key`, checked once more to lie inside ``root`` (symlinks resolved)."""
    check_key(key, what)
    base = Path(root).resolve()
    target = (base / key).resolve()
    if target != base and base not in target.parents:
        raise UnsafeNameError(f"Unsafe {what} {key[:80]!r}: it resolves outside {root} (through a symlink?).")
    return base / key
