"""Content hashes: sha256 of files, of a folder's files (refusing links), and of JSON records.

A folder's content hash is one sha256 over its sorted ``(relative path, file sha256)`` pairs, so
it changes when any file is added, removed, renamed or edited. A pipeline stacks them into a
Merkle tree: file sha256 -> component hash -> pipeline hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ArtifactError

__all__ = ["sha256_file", "canonical_hash", "content_hash", "file_hashes"]


def sha256_file(path: str | os.PathLike, *, follow_symlinks: bool = True) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks.

    With ``follow_symlinks=False`` a symbolic link (even one swapped in after a check) or anything
    but a regular file is an :class:`ArtifactError`.
    """
    digest = hashlib.sha256()
    if follow_symlinks:
        handle = open(path, "rb")
    else:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except OSError as error:
            if os.path.islink(path):
                raise ArtifactError(f"{path} is a symbolic link; an artifact must hold its own files.") from None
            raise error
        handle = os.fdopen(fd, "rb")
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            handle.close()
            raise ArtifactError(f"{path} is not a regular file (a FIFO, socket or device); remove it.")
    with handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def canonical_hash(payload: Mapping[str, Any]) -> str:
    """sha256 of ``payload`` as canonical JSON (sorted keys, no spaces)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def content_hash(file_hashes: Mapping[str, str]) -> str:
    """One sha256 over the sorted ``(relative path, file sha256)`` pairs."""
    return hashlib.sha256("".join(f"{k}\0{v}\n" for k, v in sorted(file_hashes.items())).encode()).hexdigest()


def file_hashes(folder: str | os.PathLike, *, skip_hidden: bool = True) -> dict[str, str]:
    """``{relative/path: sha256}`` of every regular file under ``folder``.

    A symbolic link or anything that is not a regular file or folder (FIFO, socket, device) is an
    :class:`ArtifactError`: an artifact holds its own bytes, never a pointer to someone else's.
    Names starting with ``.`` are skipped when ``skip_hidden`` (editor and OS clutter).
    """
    folder = Path(folder)
    out: dict[str, str] = {}

    def walk(directory: Path, prefix: str) -> None:
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            if skip_hidden and entry.name.startswith("."):
                continue
            relative = f"{prefix}{entry.name}"
            mode = entry.stat(follow_symlinks=False).st_mode
            if stat.S_ISLNK(mode):
                raise ArtifactError(f"{folder} contains a symbolic link {relative!r} -> {os.readlink(entry.path)!r}; "
                                    "an artifact must hold its own files. Replace the link with a copy of the file.")
            if stat.S_ISDIR(mode):
                walk(Path(entry.path), relative + "/")
            elif stat.S_ISREG(mode):
                out[relative] = sha256_file(entry.path, follow_symlinks=False)
            else:
                raise ArtifactError(f"{folder} contains {relative!r}, which is not a regular file "
                                    "(a FIFO, socket or device); remove it.")

    walk(folder, "")
    return out
