"""Finding a public dataset's file: a local path, ``$VIRTUALCELL_DATA``, or pooch's cache (downloading),
its sha256 verified in each case (see :mod:`virtualcell.data.public`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from ..registry.hashing import sha256_file

__all__ = ["DatasetRecord", "ChecksumError", "ENV_VAR", "Downloader", "normalise_hash", "verify_file", "lookup",
           "resolve_file"]

ENV_VAR = "VIRTUALCELL_DATA"

#: pooch downloader signature: ``downloader(url, output_file, pooch)``.
Downloader = Callable[[str, str, Any], None]


class DatasetRecord(NamedTuple):
    """One downloadable file: local ``filename``, source ``url`` (or None) and ``sha256`` (hex)."""

    filename: str
    url: str | None
    sha256: str


class ChecksumError(ValueError):
    """A dataset file does not have the expected sha256."""


def normalise_hash(known_hash: str) -> str:
    """``'sha256:abc'`` or ``'abc'`` -> ``'abc'`` (lower case); other algorithms are rejected."""
    value = known_hash.strip()
    if ":" in value:
        algo, value = value.split(":", 1)
        if algo.lower() != "sha256":
            raise ValueError(f"only sha256 hashes are supported, got {known_hash!r}")
    return value.lower()


def verify_file(path: Path, expected: str, what: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise ChecksumError(
            f"sha256 mismatch for {what} at {path}:\n  expected {expected}\n  found    {actual}\n"
            "The file is corrupt, truncated or a different version. Re-download it, or pass "
            "verify=False (or known_hash=...) to load it anyway."
        )


def lookup(registry: dict[str, DatasetRecord], variant: str, dataset: str) -> DatasetRecord:
    if variant not in registry:
        raise ValueError(f"unknown {dataset} variant {variant!r}; choose one of {sorted(registry)}")
    return registry[variant]


def resolve_file(
    record: DatasetRecord,
    what: str,
    *,
    path: str | os.PathLike[str] | None,
    cache_dir: str | os.PathLike[str] | None,
    url: str | None,
    known_hash: str | None,
    downloader: Downloader | None,
    verify: bool,
    progressbar: bool,
) -> Path:
    """Find (or download) the file for ``record``; returns a verified local path."""
    expected = normalise_hash(known_hash) if known_hash is not None else record.sha256
    if path is not None:
        local = Path(path).expanduser()
        if not local.is_file():
            raise FileNotFoundError(f"{what}: no file at {local}")
        if verify:
            verify_file(local, expected, what)
        return local

    env_dir = os.environ.get(ENV_VAR)
    if env_dir:
        candidate = Path(env_dir).expanduser() / record.filename
        if candidate.is_file():
            if verify:
                verify_file(candidate, expected, what)
            return candidate

    import pooch  # lazy: only needed for the cache / download path

    cache = Path(cache_dir).expanduser() if cache_dir is not None else Path(pooch.os_cache("virtualcell"))
    source = url if url is not None else record.url
    if source is None:
        cached = cache / record.filename
        if cached.is_file():
            if verify:
                verify_file(cached, expected, what)
            return cached
        raise FileNotFoundError(
            f"{what} ({record.filename}) has no public download URL. Put the file in a folder and "
            f"set ${ENV_VAR} to it, place it in the cache ({cache}), pass path=..., or pass url=... "
            "pointing to a copy you host."
        )
    try:
        fetched = pooch.retrieve(
            url=source,
            known_hash=f"sha256:{expected}" if verify else None,
            fname=record.filename,
            path=cache,
            downloader=downloader,
            progressbar=progressbar,
        )
    except ValueError as err:
        if "hash" in str(err).lower():
            raise ChecksumError(
                f"sha256 mismatch for {what} downloaded from {source}: expected {expected}. "
                f"The download was discarded. ({err})"
            ) from err
        raise
    return Path(fetched)
