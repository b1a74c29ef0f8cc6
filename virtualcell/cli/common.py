"""Helpers shared by the command modules: reading inputs, guarding outputs, the error message (option parsing:
:mod:`.options`)."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer

from .options import parse_options  # the one option parser of every command (re-exported here)

__all__ = ["parse_options", "fail", "read_h5ad", "read_cells", "match_rule", "select_cells", "MissingColumnError", "refuse_overwriting_input",
           "check_output_file", "check_output_folder", "cli_device"]


def fail(error: Exception | str) -> None:
    """Print ``error: ...`` in red on stderr and exit with code 2."""
    typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def read_h5ad(path: Path, option: str = "--data"):
    """Read an .h5ad file, with errors that say what the path is instead of what h5py thought."""
    import anndata as ad
    import h5py

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{option} {path} does not exist.")
    if path.is_dir():
        raise IsADirectoryError(f"{option} {path} is a folder; {option} takes an .h5ad file"
                                + (" (convert a .zarr AnnData with anndata.read_zarr(path).write_h5ad(...))."
                                   if path.suffix == ".zarr" else "."))
    if path.stat().st_size == 0:
        raise ValueError(f"{option} {path} is empty (0 bytes); was it written completely?")
    if not h5py.is_hdf5(path):
        raise ValueError(f"{option} {path} is not an .h5ad file (no HDF5 signature); pass an AnnData written with "
                         "adata.write_h5ad (CSV, loom or mtx files: read them with scanpy, then write_h5ad).")
    try:
        with warnings.catch_warnings():   # a legacy layout, moved in memory (the file is never rewritten): not news
            warnings.filterwarnings("ignore", message=r"Moving element from \.uns", category=FutureWarning)
            return ad.read_h5ad(path)
    except (OSError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{option} {path} could not be read as an .h5ad file ({error}); is it complete and "
                         "written by anndata?") from error


class MissingColumnError(KeyError):
    """A ``key=value`` rule names an obs column that is not there (prints without KeyError's quotes)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def match_rule(obs, rule: str, option: str = "--cells"):
    """Boolean mask [n_obs] of the rows of ``obs`` matching every ``key=value`` of ``rule`` (joined by '&')."""
    import numpy as np

    mask = np.ones(len(obs), dtype=bool)
    for part in rule.split("&"):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{option} {rule!r}: each part must be key=value (e.g. cell_type=CD4T).")
        if key not in obs:
            raise MissingColumnError(f"{option} {rule!r}: obs column {key!r} not found; available: {list(obs.columns)}")
        mask &= (obs[key].astype(str) == value).to_numpy()
    return mask


def select_cells(adata, rule: str, option: str = "--cells"):
    """The cells of ``adata`` matching ``rule`` (a copy); an empty selection is an error listing the values."""
    mask = match_rule(adata.obs, rule, option)
    if not mask.any():
        values = {key: sorted(map(str, adata.obs[key].astype(str).unique()))[:20]
                  for key, _, _ in (part.partition("=") for part in rule.split("&"))}
        raise ValueError(f"No cell matches {option} {rule!r}; the values present are {values}.")
    return adata[mask].copy()


def read_cells(path: Path, cells: str | None, option: str = "--data"):
    """The .h5ad at ``path``, narrowed to the cells matching ``cells`` (``--cells``) when given."""
    adata = read_h5ad(path, option)
    return select_cells(adata, cells) if cells else adata


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def refuse_overwriting_input(out: Path, *inputs: Path | None, option: str = "--out") -> None:
    """Raise ValueError when writing ``out`` could touch an input: ``out`` is one of ``inputs`` (same file
    after resolving links), an input lies inside the folder ``out`` (replacing it would delete the input),
    or ``out`` lies inside an input folder (it would change that artifact)."""
    out = Path(out)
    target = out.resolve()
    for path in inputs:
        if path is None:
            continue
        path = Path(path)
        source = path.resolve()
        same = target == source or (out.exists() and path.exists() and out.samefile(path))
        if same or _inside(source, target):
            raise ValueError(f"{option} {out} is {'the input' if same else 'a folder holding the input'} {path}; "
                             "write the output to another path (virtualcell never writes over its input).")
        if source.is_dir() and _inside(target, source):
            raise ValueError(f"{option} {out} is inside the input folder {path}; write the output elsewhere "
                             "(writing there would change that input).")


def _check_writable_parent(out: Path, option: str) -> None:
    import os

    parent = next((p for p in out.absolute().parents if p.exists()), None)
    if parent is not None and parent.is_dir() and not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"{option} {out}: cannot write in {parent} (permission denied); choose a folder "
                              "you can write to.")


def _check_parents_and_existing(out: Path, *, overwrite: bool, option: str) -> None:
    """Refuse ``out`` when a parent is a file, the parent is not writable, or it exists (without ``overwrite``)."""
    blocking = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise NotADirectoryError(f"{option} {out}: {blocking} is a file, not a folder; choose another path.")
    _check_writable_parent(out, option)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{option} {out} already exists; pass --overwrite to replace it, or another path.")


def check_output_file(out: Path, *, overwrite: bool, option: str = "--out") -> None:
    """Refuse an output file path that is a folder, sits under a file, or exists (without ``overwrite``)."""
    out = Path(out)
    if out.is_dir():
        raise IsADirectoryError(f"{option} {out} is a folder; pass a file path such as {out / 'predicted.h5ad'}.")
    _check_parents_and_existing(out, overwrite=overwrite, option=option)


def check_output_folder(out: Path, *, overwrite: bool, option: str = "--out", replaces: str | None = None) -> None:
    """Refuse an output folder path that is a file, sits under a file, or exists (without ``overwrite``).

    With ``replaces`` (a file name such as ``pipeline.json``), ``overwrite`` only replaces a folder holding
    that file (or an empty one): a folder of the user's own files is never deleted.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{option} {out} is a file; this command writes a folder there, so choose another path.")
    _check_parents_and_existing(out, overwrite=overwrite, option=option)
    if out.is_dir() and replaces and not (out / replaces).exists() and any(out.iterdir()):
        found = sorted(p.name for p in out.iterdir())[:5]
        raise FileExistsError(f"{option} {out} is a folder without {replaces} (it holds {found}); --overwrite only "
                              f"replaces a folder this command wrote, so choose another path.")


def cli_device(device: str) -> str:
    """``--device`` resolved up front (``auto`` -> what this machine has); a missing GPU is a clear error."""
    from ..execution import resolve_device

    return str(resolve_device(device))
