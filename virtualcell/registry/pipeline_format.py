"""The pipeline folder format, one for every pipeline kind: ``pipeline.json`` and its Merkle record.

```
<pipeline>/  pipeline.json   format_version, class, components {role: folder}, kinds {role: kind},
                             metadata, virtualcell_version, tensor_files {name: sha256}, the pipeline
                             kind's own fields (e.g. an ensemble's weights), the Merkle record (sha256
                             of every file of every part -> one hash per part -> the pipeline hash) and
                             sha256 (of all the rest, canonical JSON)
             <role>/         one folder per part: a component artifact, or (kind "pipeline") a pipeline
                             folder in this same format (an ensemble's members)
             *.safetensors   the pipeline's own tensors, if any
             README.md       model card
```
Loading recomputes the Merkle record from the folder, so a part swapped in from another pipeline is
refused; :func:`verify_folder` runs the same checks (nested pipelines included) before a publish.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from . import merkle
from .errors import ArtifactError, TamperedArtifactError
from .hashing import canonical_hash, sha256_file
from .limits import read_json
from .names import UnsafeNameError, check_segment

__all__ = ["PIPELINE_FILE", "PIPELINE_FORMAT", "PIPELINE_KIND", "RESERVED", "read_record", "is_legacy", "check_spec",
           "read_spec", "write_spec", "verify", "verify_folder", "read_tensor_files", "own_fields"]

PIPELINE_FILE = "pipeline.json"
PIPELINE_FORMAT = 2   # 2: Merkle record and kinds (1 is still read, with a warning)
#: the kind recorded for a part that is itself a pipeline folder (an ensemble's members)
PIPELINE_KIND = "pipeline"
#: the fields of the format itself; any other top-level field belongs to the pipeline kind
RESERVED = frozenset({"format_version", "class", "components", "kinds", "metadata", "virtualcell_version",
                      "tensor_files", "merkle", "sha256"})
_MAX_DEPTH = 8   # pipelines nested in pipelines (an ensemble's members) at most this deep


def read_record(path: Path) -> dict[str, Any]:
    """``pipeline.json`` of the folder ``path`` as read (size-limited), not yet checked; it must be an object."""
    file = Path(path) / PIPELINE_FILE
    if not file.is_file():
        raise ArtifactError(f"{path} is not a pipeline folder (no {PIPELINE_FILE}).")
    spec = read_json(file)
    if not isinstance(spec, dict):
        raise TamperedArtifactError(f"{file} is not a pipeline record (a JSON {type(spec).__name__}, not an object); "
                                    "it is damaged. Re-save or re-pull the pipeline.")
    return spec


def is_legacy(spec: Mapping[str, Any]) -> bool:
    """Whether ``spec`` is an ensemble record of virtualcell <= 0.x (``members`` paths, no Merkle record)."""
    return "components" not in spec and isinstance(spec.get("members"), list)


def check_spec(path: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` (from :func:`read_record`) checked: its own hash, format version, part and file names."""
    file = Path(path) / PIPELINE_FILE
    if is_legacy(spec):
        raise ArtifactError(f"{path} is an ensemble saved by an older virtualcell, without a hash record of its "
                            "members; load it with virtualcell.load_pipeline(path) and save it again to upgrade.")
    if not isinstance(spec.get("components"), dict) or "class" not in spec:
        raise TamperedArtifactError(f"{file} is not a pipeline record (no 'class' / 'components'); it is damaged.")
    version = spec.get("format_version", 0)
    if not isinstance(version, int) or version > PIPELINE_FORMAT:
        raise ArtifactError(f"{path} uses pipeline format {version!r}; upgrade virtualcell (pip install -U virtualcell).")
    recorded = {k: v for k, v in spec.items() if k != "sha256"}
    if spec.get("sha256") != canonical_hash(recorded):
        raise TamperedArtifactError(f"{file} was edited after the pipeline was saved (hash mismatch). Re-save it.")
    try:
        for role, folder in spec["components"].items():
            check_segment(role, "pipeline role")
            check_segment(folder, "component folder")
        for filename in spec.get("tensor_files", {}):
            check_segment(filename, "tensor file")
    except UnsafeNameError as error:
        raise TamperedArtifactError(f"{file}: {error}") from None
    return spec


def read_spec(path: Path) -> dict[str, Any]:
    """``pipeline.json`` of ``path``, read and checked (:func:`check_spec`)."""
    return check_spec(path, read_record(path))


def own_fields(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of the pipeline kind (everything but :data:`RESERVED`)."""
    return {k: v for k, v in spec.items() if k not in RESERVED}


def write_spec(folder: Path, *, cls: str, kinds: Mapping[str, str], metadata: Mapping[str, Any],
               tensor_files: Iterable[str] = (), fields: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write ``folder/pipeline.json`` for the parts already saved in ``folder/<role>/`` and the tensor files.

    ``kinds``: ``{role: kind}`` (each role's folder is named after it); ``fields``: the pipeline kind's own
    JSON fields (not :data:`RESERVED`), covered by the hash like the rest. Returns the record.
    """
    from .artifact import package_version

    folder = Path(folder)
    clash = sorted(set(fields or {}) & RESERVED)
    if clash:
        raise ValueError(f"Pipeline fields {clash} are reserved by the pipeline format; rename them.")
    names = {check_segment(role, "pipeline role"): role for role in kinds}
    files = [check_segment(name, "tensor file") for name in tensor_files]
    spec: dict[str, Any] = {"format_version": PIPELINE_FORMAT, "class": cls, "components": names,
                            "kinds": dict(kinds), "metadata": dict(metadata),
                            "virtualcell_version": package_version("virtualcell"), **dict(fields or {})}
    if files:
        spec["tensor_files"] = {name: sha256_file(folder / name) for name in files}
    spec["merkle"] = merkle.build(folder, names, files)
    spec["sha256"] = canonical_hash(spec)
    (folder / PIPELINE_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return spec


def verify(path: Path, spec: Mapping[str, Any], *, stacklevel: int = 3) -> None:
    """Every part folder and tensor file against the Merkle record (format 1: a warning, nothing to check)."""
    if spec["format_version"] >= 2:
        merkle.verify(path, spec.get("merkle"), spec["components"], spec.get("tensor_files", {}))
    else:
        warnings.warn(f"{path} was saved before pipelines recorded their components' hashes (format 1), so "
                      "a swapped component folder cannot be detected. Re-save it to upgrade.", stacklevel=stacklevel)


def verify_folder(path: Path, *, depth: int = 0) -> dict[str, Any]:
    """The checks a load makes on the folder itself (record, Merkle hashes, nested pipelines); returns the record."""
    if depth > _MAX_DEPTH:
        raise TamperedArtifactError(f"{path}: pipelines nested more than {_MAX_DEPTH} deep; the folder is damaged.")
    path = Path(path)
    spec = read_spec(path)
    verify(path, spec)
    for role, folder in spec["components"].items():
        if spec.get("kinds", {}).get(role) == PIPELINE_KIND:
            verify_folder(path / folder, depth=depth + 1)
    return spec


def read_tensor_files(path: Path, checksums: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The tensor files listed in ``pipeline.json``, each checked against its recorded sha256 (CPU tensors)."""
    from .limits import load_safetensors

    files = {}
    for filename, digest in checksums.items():
        file = Path(path) / check_segment(filename, "tensor file")
        if file.is_symlink() or not file.is_file():
            raise TamperedArtifactError(f"{path} is missing {filename}; the pipeline artifact is incomplete.")
        if sha256_file(file) != digest:
            raise TamperedArtifactError(f"{file} was modified after the pipeline was saved (sha256 mismatch). "
                                        "Re-save or re-pull the pipeline.")
        files[filename] = load_safetensors(file)
    return files
