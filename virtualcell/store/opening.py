"""Opening a store's root group, refusing what would lose or mix up data.

- ``mode="w"`` on a store that holds embeddings deletes them all: refused unless ``overwrite=True``;
- a folder that holds other files and no ``zarr.json`` is not a store: refused (no ``zarr.json`` is
  written into it), as is a zarr group of another type (an AnnData, say), in every mode;
- ``mode="r"`` on a missing store is an error; ``"a"`` (the default) and ``"r+"`` create it when missing.
"""

from __future__ import annotations

from pathlib import Path

from .format import READABLE_VERSIONS, STORE_TYPE, VERSION, StoreError

__all__ = ["open_root", "MODES"]

MODES = ("r", "r+", "a", "w")
#: what a store folder holds besides its keys (the writers' lock folder)
SERVICE = (".virtualcell-locks", ".virtualcell-work", "zarr.json")


def _check_folder(path: str) -> None:
    """Refuse a local path that is a file, or a folder of other files (not a store, not empty)."""
    if "://" in path or not Path(path).exists():
        return
    folder = Path(path)
    if not folder.is_dir():
        raise StoreError(f"{path} is a file, not an embedding store; give a folder path (e.g. cells.zarr).")
    if not (folder / "zarr.json").exists() and any(folder.iterdir()):
        listed = sorted(p.name for p in folder.iterdir())[:5]
        raise StoreError(f"{path} is a folder of other files ({listed}), not an embedding store; refusing to write a "
                         "store into it. Give a new or empty folder (e.g. cells.zarr).")


def _check_type(root, path: str) -> None:
    """Refuse a zarr group that is not an embedding store (or of a version this code cannot read)."""
    kind, version = root.attrs.get("encoding-type"), root.attrs.get("encoding-version")
    if kind is None:
        members = [name for name in root.group_keys() if name not in SERVICE]
        members += [name for name, _ in root.arrays()]
        if members:
            raise StoreError(f"{path} is a zarr group (holding {sorted(members)[:5]}) that is not a virtualcell "
                             "embedding store; give a new or empty folder.")
    elif kind != STORE_TYPE:
        raise StoreError(f"{path} is a zarr group of type {kind!r}, not a virtualcell embedding store; give a new "
                         "or empty folder.")
    elif version not in READABLE_VERSIONS:
        raise StoreError(f"{path} is an embedding store of version {version!r}; this virtualcell reads "
                         f"{list(READABLE_VERSIONS)}. Upgrade virtualcell.")


def _existing(path: str):
    """The root group at ``path`` opened read-only, or ``None`` when there is none."""
    import zarr

    try:
        return zarr.open_group(path, mode="r", zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError):
        return None


def open_root(path: str, mode: str, *, overwrite: bool = False):
    """The store's root zarr group at ``path`` opened with ``mode`` (see the module docstring)."""
    import zarr

    if mode not in MODES:
        raise StoreError(f"mode={mode!r}: choose one of {list(MODES)} ('a' opens or creates, 'r' only reads).")
    _check_folder(path)
    existing = _existing(path)
    if existing is not None:
        _check_type(existing, path)
        keys = sorted(name for name in existing.group_keys() if not name.startswith(".")) if mode == "w" else []
        if keys and not overwrite:
            raise StoreError(f"{path} already holds the embeddings {keys}; mode='w' would delete them all. Pass "
                             "overwrite=True to replace the whole store, or open it with mode='a' to add or "
                             "replace single keys.")
    elif mode in ("r", "r+"):
        raise StoreError(f"No embedding store at {path}; open it with mode='a' to create one.")
    attributes = {"encoding-type": STORE_TYPE, "encoding-version": VERSION}
    root = zarr.open_group(path, mode=mode, zarr_format=3, attributes=attributes)  # created with its type, in one write
    if root.attrs.get("encoding-type") is None and mode != "r":
        root.attrs.update(attributes)  # an empty group (say, made by zarr by hand) becomes a store
    return root
