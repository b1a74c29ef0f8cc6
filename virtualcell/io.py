"""Atomic writes of single files (bytes, text, JSON, h5ad): the one place the package writes a file.

Each writer creates ``.<name>.<random>.tmp<suffix>`` beside the target, writes it whole, then
renames it onto the target in one step, so a reader (or a crash) sees the old file or the new
one, never half of one. The file is created by ``open`` (0o666 minus the umask; a ``mkstemp``
file would stay 0o600). Crash-safe replacement of whole folders is ``registry/atomic.py``.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "write_bytes", "write_text", "write_json", "write_h5ad", "json_clean"]


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` then move the file onto ``path`` in one step (no half-written files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp{path.suffix}"
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def json_clean(value: Any) -> Any:
    """Plain JSON: NaN/inf -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(value, Mapping):
        return {str(k): json_clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_clean(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | os.PathLike[str], payload: Any, *, indent: int | None = 2) -> Path:
    """Write ``payload`` as strict JSON (NaN/inf become null) followed by a newline."""
    return write_text(path, json.dumps(json_clean(payload), indent=indent, allow_nan=False) + "\n")


def write_h5ad(adata: Any, path: str | os.PathLike[str]) -> Path:
    """Write an AnnData to ``path`` atomically.

    Under pandas >= 3 text columns and indices are pandas' string arrays, which anndata writes only
    on opt-in (files then need anndata >= 0.11 to read); the opt-in is scoped to this write.
    """
    import anndata as ad
    import pandas as pd

    def write(tmp: Path) -> None:
        if int(pd.__version__.split(".")[0]) >= 3 and hasattr(ad.settings, "allow_write_nullable_strings"):
            with ad.settings.override(allow_write_nullable_strings=True):
                adata.write_h5ad(tmp)
        else:
            adata.write_h5ad(tmp)

    return atomic_write(path, write)
