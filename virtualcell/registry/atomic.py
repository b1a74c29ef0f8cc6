"""Crash-safe folder replacement: after a crash at any point the path holds the old or the new folder.

Writing ``<dir>/<name>``:

1. the new folder is written as ``<dir>/.<name>.new-<pid>-<token>``;
2. an existing folder is renamed to ``<dir>/.<name>.old-<pid>-<token>`` (the backup);
3. the new folder is renamed to ``<dir>/<name>``;
4. the backup is deleted.

A crash between 2 and 3 leaves no folder at the path but a whole backup: :func:`recover` (run by
every save and load of that path) renames the backup back. Leftovers whose writing process is
gone are deleted by the same call, so temporary folders do not pile up. Folders are created with
``os.mkdir`` (mode 0o777 minus the umask), files by ``open`` (0o666 minus the umask).
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from . import faults
from .errors import ArtifactError

__all__ = ["atomic_directory", "recover", "leftovers", "check_replaceable", "make_dir", "alive"]

_NEW, _OLD = "new", "old"


def make_dir(path: str | os.PathLike) -> Path:
    """Create the folder ``path`` (not its parents) with the umask's permissions; returns it."""
    os.mkdir(path, 0o777)
    return Path(path)


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (this one, or anyone's)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def leftovers(path: str | os.PathLike) -> list[tuple[Path, str, int]]:
    """``(folder, "new" | "old", pid)`` for every temporary folder a replace of ``path`` left beside it."""
    path = Path(path)
    prefix = f".{path.name}."
    found = []
    try:
        entries = os.listdir(path.parent)
    except FileNotFoundError:
        return []
    for entry in entries:
        if not entry.startswith(prefix):
            continue
        role, _, rest = entry[len(prefix):].partition("-")
        pid = rest.split("-", 1)[0]
        if role in (_NEW, _OLD) and pid.isdigit():
            found.append((path.parent / entry, role, int(pid)))
    return found


def recover(path: str | os.PathLike) -> None:
    """Restore ``path`` from a backup a crashed replace left, then delete dead writers' leftovers."""
    path = Path(path)
    dead = [(folder, role) for folder, role, pid in leftovers(path) if not alive(pid)]
    if not dead:
        return
    try:
        if not os.path.lexists(path):
            backups = sorted((f for f, role in dead if role == _OLD), key=lambda f: f.stat().st_mtime)
            if backups:
                os.rename(backups[-1], path)
                dead = [(f, role) for f, role in dead if f != backups[-1]]
    except OSError:  # read-only location, or another process recovered it first: leave it to them
        return
    for folder, _ in dead:
        shutil.rmtree(folder, ignore_errors=True)


def _recorded_files(folder: Path) -> set[str] | None:
    """Top-level entries an artifact folder's own record names, or None if it is not an artifact."""
    from .limits import read_json

    if (folder / "config.json").is_file():
        try:
            config = read_json(folder / "config.json")
        except ValueError:
            return None
        checksums = config.get("checksums") if isinstance(config, dict) else None
        if not isinstance(checksums, dict) or "component" not in config:
            return None
        return {"config.json", "README.md", *map(str, checksums)}
    if (folder / "pipeline.json").is_file():
        try:
            spec = read_json(folder / "pipeline.json")
        except ValueError:
            return None
        if not isinstance(spec, dict) or not isinstance(spec.get("components", {}), dict):
            return None
        roles = {str(v) for v in spec.get("components", {}).values()}
        parts = [str(m) for m in spec.get("members") or []]  # ensembles: members/<i>, each a pipeline
        for part in sorted(roles) + parts:
            problem = check_replaceable(folder / part, raise_error=False) if ".." not in part else "unsafe name"
            if problem:
                raise _Refused(f"its part {part!r}: {problem}")
        members = {p.split("/", 1)[0] for p in parts}
        return {"pipeline.json", "README.md", *roles, *members, *map(str, spec.get("tensor_files") or {})}
    return None


class _Refused(Exception):
    """Why a part of an artifact must not be replaced."""


def check_replaceable(path: Path, *, raise_error: bool = True) -> str | None:
    """Why the existing ``path`` must not be replaced (not an artifact, or holds other files), or None."""
    problem = None
    if path.is_symlink() or not path.is_dir():
        problem = "it is not a folder" if not path.is_symlink() else "it is a symbolic link"
    elif any(path.iterdir()):
        try:
            recorded = _recorded_files(path)
        except _Refused as refused:
            recorded, problem = set(), str(refused)
        if recorded is None:
            problem = "it is not a virtualcell artifact (no valid config.json or pipeline.json)"
        elif problem is None:
            extra = sorted(p.name for p in path.iterdir() if p.name not in recorded)
            if extra:
                problem = f"it holds files that are not part of the artifact: {extra[:10]}"
    if problem and raise_error:
        raise ArtifactError(f"Refusing to overwrite {path}: {problem}. Move those files away or choose another path.")
    return problem


class atomic_directory:
    """``with atomic_directory(path, overwrite=False) as tmp:`` write into ``tmp``; on success it becomes ``path``.

    On error nothing at ``path`` changes. With ``overwrite`` an existing artifact folder is replaced
    (a crash leaves the old or the new one, see the module docstring); a folder holding anything
    else is refused.
    """

    def __init__(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.overwrite = overwrite

    def _sibling(self, role: str) -> Path:
        return self.path.with_name(f".{self.path.name}.{role}-{os.getpid()}-{uuid.uuid4().hex[:12]}")

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        recover(self.path)
        if os.path.lexists(self.path):
            if not self.overwrite:
                raise FileExistsError(f"{self.path} already exists; pass overwrite=True to replace it.")
            check_replaceable(self.path)
        self.tmp = make_dir(self._sibling(_NEW))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        try:
            self._move_into_place()
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise

    def _move_into_place(self) -> None:
        _fsync_tree(self.tmp)
        faults.checkpoint("replace:written")
        if not os.path.lexists(self.path):
            try:
                os.rename(self.tmp, self.path)  # fails if another writer put a non-empty folder there meanwhile
            except OSError:
                raise FileExistsError(f"{self.path} was created by another writer while this one was saving; "
                                      "pass overwrite=True to replace it.") from None
            _fsync_dir(self.path.parent)
            return
        if not self.overwrite:
            raise FileExistsError(f"{self.path} already exists; pass overwrite=True to replace it.")
        old: Path | None = self._sibling(_OLD)
        try:
            os.rename(self.path, old)
        except FileNotFoundError:  # another writer moved it aside first
            old = None
        faults.checkpoint("replace:moved-old-aside")
        try:
            os.rename(self.tmp, self.path)
        except OSError:
            if old is not None and not os.path.lexists(self.path):
                os.rename(old, self.path)  # put the old one back
            elif old is not None:
                shutil.rmtree(old, ignore_errors=True)  # another writer's new version is in place
            raise FileExistsError(f"{self.path} was replaced by another writer while this one was saving; "
                                  "its version is in place. Save again to replace it.") from None
        _fsync_dir(self.path.parent)
        faults.checkpoint("replace:moved-new-in")
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    """Flush every file of ``folder`` to disk before it is renamed into place."""
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(root))

