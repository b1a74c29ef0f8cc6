"""Replacing a key of a local store so that a kill at any moment leaves its old or its new version.

A new version of ``key`` is built as ``.<key>.<id>.partial``; when it is complete:

1. ``.<key>.<id>.partial`` -> ``.<key>.<id>.ready``   (the new version is complete)
2. ``<key>`` -> ``.<key>.old-<id>``                   (the old version moved aside)
3. ``.<key>.<id>.ready`` -> ``<key>``                  (the new version in place)
4. ``.<key>.old-<id>`` deleted.

A kill between 2 and 3 leaves no ``<key>`` folder. Readers then read the ready version (or, with
none, the newest old one) where it lies (:func:`readable_path`), and the next writer or read-write
open of the store moves it into place (:func:`recover`), so a key never disappears. A kill before 1
leaves an incomplete ``.partial`` that readers ignore and :func:`recover` deletes; a kill between 1
and 2 leaves the old version in place and a ready one that :func:`recover` deletes (the write never
returned). Stores written by earlier versions left ``.partial`` folders only: the old version wins.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

__all__ = ["replace_folder", "recover", "readable_path", "stranded_keys", "temporary_name"]

_LEFTOVER = re.compile(r"\.(?P<key>.+)\.(?:old-[0-9a-f]{8}|[0-9a-f]{8}\.(?:ready|partial))")


def temporary_name(key: str) -> str:
    """A fresh ``.<key>.<id>.partial`` name to build a new version of ``key`` under."""
    return f".{key}.{uuid.uuid4().hex[:8]}.partial"


def _newest(paths: list[Path]) -> Path | None:
    existing = []
    for path in paths:
        try:
            existing.append((path.stat().st_mtime, path))
        except FileNotFoundError:  # moved by a writer meanwhile
            continue
    return max(existing)[1] if existing else None


def readable_path(local_root: Path, key: str) -> Path | None:
    """Where ``key`` can be read: its folder, or (after a kill mid-replace) the ready or old version."""
    if (local_root / key / "zarr.json").exists():
        return local_root / key
    ready = _newest([p for p in local_root.glob(f".{key}.*.ready") if (p / "zarr.json").exists()])
    return ready or _newest([p for p in local_root.glob(f".{key}.old-*") if (p / "zarr.json").exists()])


def stranded_keys(local_root: Path) -> set[str]:
    """Keys with leftovers of a killed writer (call :func:`recover` on each, under its lock)."""
    found = set()
    for path in local_root.glob(".*"):
        match = _LEFTOVER.fullmatch(path.name)
        if match:
            found.add(match["key"])
    return found


def recover(local_root: Path, key: str) -> None:
    """Put ``key`` back in place after a killed writer and delete the leftovers (under ``key``'s lock)."""
    target = local_root / key
    if not target.exists():
        found = readable_path(local_root, key)
        if found is not None:
            os.replace(found, target)
    for pattern in (f".{key}.*.partial", f".{key}.*.ready", f".{key}.old-*"):
        for path in local_root.glob(pattern):
            shutil.rmtree(path, ignore_errors=True)


def replace_folder(local_root: Path, temporary: str, key: str) -> None:
    """Move the complete ``temporary`` version into place as ``key`` (see the module docstring)."""
    ready = local_root / temporary.replace(".partial", ".ready")
    os.replace(local_root / temporary, ready)
    old = None
    if (local_root / key).exists():
        old = local_root / f".{key}.old-{uuid.uuid4().hex[:8]}"
        os.replace(local_root / key, old)
    os.replace(ready, local_root / key)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
