"""Bounded reads of files other people wrote: JSON records and safetensors headers.

A hostile ``config.json`` of gigabytes, JSON nested a million deep, or a safetensors file whose
8-byte header length claims terabytes is refused with a clear error before anything large is
read into memory.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

from .errors import ArtifactError, TamperedArtifactError

__all__ = ["MAX_JSON_BYTES", "MAX_SAFETENSORS_HEADER", "read_json", "parse_json", "check_safetensors", "load_safetensors", "save_safetensors", "LimitError"]

MAX_JSON_BYTES = 64 << 20            # config.json, pipeline.json, hub manifests
MAX_SAFETENSORS_HEADER = 100_000_000  # the safetensors library's own limit


class LimitError(ArtifactError):
    """A file larger or deeper than anything virtualcell writes."""


def parse_json(data: bytes | str, where: str, limit: int = MAX_JSON_BYTES) -> Any:
    """``json.loads`` with a size limit; too big, too deep or invalid JSON is an ``ArtifactError`` naming ``where``."""
    if len(data) > limit:
        raise LimitError(f"{where} is {len(data)} bytes, more than the {limit} a virtualcell record can be; "
                         "it is damaged or hostile. Refusing to read it.")
    try:
        return json.loads(data)
    except RecursionError:
        raise LimitError(f"{where} nests JSON too deeply to be a virtualcell record; refusing to read it.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise TamperedArtifactError(f"{where} is not valid JSON ({error}); the file is damaged.") from None


def read_json(path: str | os.PathLike, limit: int = MAX_JSON_BYTES) -> Any:
    """Read a JSON file whose size is checked before it is read."""
    size = os.stat(path).st_size
    if size > limit:
        raise LimitError(f"{path} is {size} bytes, more than the {limit} a virtualcell record can be; "
                         "it is damaged or hostile. Refusing to read it.")
    with open(path, "rb") as handle:
        return parse_json(handle.read(limit + 1), str(path), limit)


def check_safetensors(path: str | os.PathLike) -> dict[str, Any]:
    """The header of a safetensors file, checked: its length fits the file and the limit, every tensor's
    byte range lies inside the data. Raises :class:`LimitError` (with the reason) otherwise."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise LimitError(f"{path} is {size} bytes, too short to be a safetensors file.")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_SAFETENSORS_HEADER or n > size - 8:
            raise LimitError(f"{path} claims a safetensors header of {n} bytes in a file of {size} bytes; "
                             "it is damaged or hostile. Refusing to read it.")
        header = parse_json(handle.read(n), f"the safetensors header of {path}", MAX_SAFETENSORS_HEADER)
    if not isinstance(header, dict):
        raise LimitError(f"{path}: the safetensors header is not a JSON object.")
    data = size - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= data):
            raise LimitError(f"{path}: tensor {name[:80]!r} points outside the file's data ({offsets!r}).")
    return header


def load_safetensors(path: str | os.PathLike) -> dict[str, Any]:
    """``safetensors.torch.load_file`` after :func:`check_safetensors`; the library's errors become :class:`LimitError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    check_safetensors(path)
    try:
        return load_file(str(path))
    except SafetensorError as error:
        raise LimitError(f"{path} is not a valid safetensors file ({error}).") from None


def save_safetensors(tensors: dict[str, Any], path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` as safetensors with ordinary file permissions (0o666 minus the umask).

    ``safetensors.torch.save_file`` creates its files 0o600, whatever the umask.
    """
    from safetensors.torch import save

    with open(path, "wb") as handle:
        handle.write(save(tensors, metadata=metadata))
