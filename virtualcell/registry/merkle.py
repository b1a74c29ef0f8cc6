"""A pipeline's Merkle manifest: file sha256 -> component hash -> one pipeline hash.

```
"merkle": {"components": {"<role>": {"files": {"config.json": sha256, ...}, "hash": sha256}},
           "files": {"<tensor file>": sha256},
           "hash": sha256 over the component hashes and the pipeline's own files}
```
:func:`verify` recomputes every hash from the folder and names the role whose folder differs,
so a component folder swapped in from another pipeline (or edited, or with a file added) is
refused instead of loaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import TamperedArtifactError
from .hashing import content_hash, file_hashes, sha256_file
from .names import UnsafeNameError, check_segment

__all__ = ["build", "verify", "top_hash"]


def top_hash(component_hashes: Mapping[str, str], files: Mapping[str, str]) -> str:
    """The pipeline hash over its components' hashes (keyed ``<role>/``) and its own files."""
    return content_hash({**{f"{role}/": h for role, h in component_hashes.items()}, **files})


def build(root: str | Path, roles: Iterable[str], files: Iterable[str]) -> dict[str, Any]:
    """The Merkle record of the pipeline folder ``root`` with component folders ``roles`` and own ``files``."""
    root = Path(root)
    components = {}
    for role in roles:
        hashes = file_hashes(root / check_segment(role, "pipeline role"))
        components[role] = {"files": hashes, "hash": content_hash(hashes)}
    own = {check_segment(name, "pipeline file"): sha256_file(root / name) for name in files}
    return {"components": components, "files": own,
            "hash": top_hash({r: c["hash"] for r, c in components.items()}, own)}


def _differences(recorded: Mapping[str, str], found: Mapping[str, str]) -> str:
    parts = []
    for label, names in (("changed", [k for k in recorded if k in found and found[k] != recorded[k]]),
                         ("missing", [k for k in recorded if k not in found]),
                         ("added", [k for k in found if k not in recorded])):
        if names:
            parts.append(f"{label}: {sorted(names)[:5]}")
    return "; ".join(parts)


def verify(root: str | Path, record: Any, roles: Mapping[str, str], files: Iterable[str]) -> str:
    """Check the pipeline folder ``root`` against its Merkle ``record``; returns the pipeline hash.

    ``roles`` maps each role to its folder (from ``pipeline.json``), ``files`` the pipeline's own files.
    """
    root = Path(root)
    where = root / "pipeline.json"
    if not isinstance(record, dict) or not isinstance(record.get("components"), dict):
        raise TamperedArtifactError(f"{where} has no valid Merkle record; the pipeline is damaged. Re-save it.")
    if set(record["components"]) != set(roles):
        raise TamperedArtifactError(f"{where} records hashes for roles {sorted(record['components'])} but names "
                                    f"components {sorted(roles)}; the pipeline is damaged. Re-save it.")
    hashes = {}
    for role, folder in roles.items():
        try:
            check_segment(folder, "component folder")
        except UnsafeNameError as error:
            raise TamperedArtifactError(f"{where}: {error}") from None
        entry = record["components"][role]
        found = file_hashes(root / folder)
        recorded = entry.get("files") if isinstance(entry, dict) else None
        if not isinstance(recorded, dict) or found != recorded or content_hash(found) != entry.get("hash"):
            detail = _differences(recorded, found) if isinstance(recorded, dict) else "no file list recorded"
            changed = sorted(k for k in found if isinstance(recorded, dict) and k in recorded and found[k] != recorded[k])
            first = f"{folder}/{changed[0]} was modified after the pipeline was saved: " if changed else ""
            raise TamperedArtifactError(
                f"{first}the {role} of the pipeline at {root} ({folder}/) is not the component it was saved "
                f"with ({detail}). A component folder was swapped in from another pipeline or edited; "
                "re-save the pipeline from its components, or re-pull it.")
        hashes[role] = entry["hash"]
    own = {}
    for name in files:
        check_segment(name, "pipeline file")
        file = root / name
        if file.is_symlink() or not file.is_file():
            raise TamperedArtifactError(f"{root} is missing {name}; the pipeline artifact is incomplete.")
        own[name] = sha256_file(file)
    if own != record.get("files") or top_hash(hashes, own) != record.get("hash"):
        raise TamperedArtifactError(f"{root}: the pipeline's own files ({sorted(own)}) do not match its Merkle "
                                    "record (sha256 mismatch). Re-save or re-pull the pipeline.")
    return record["hash"]
