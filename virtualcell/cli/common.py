"""Helpers shared by the command modules: option parsing, reading inputs, the error message."""

from __future__ import annotations

import json
from pathlib import Path

import typer

__all__ = ["parse_options", "fail", "read_h5ad", "match_rule", "refuse_overwriting_input"]


def parse_options(options: list[str] | None, what: str) -> dict:
    """``["n_latent=50", "likelihood=\\"nb\\""]`` -> ``{"n_latent": 50, "likelihood": "nb"}`` (JSON values, else strings)."""
    out = {}
    for option in options or []:
        key, sep, value = option.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{what} option {option!r} must look like key=value (e.g. n_latent=50).")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def fail(error: Exception | str) -> None:
    """Print ``error: ...`` in red on stderr and exit with code 2."""
    typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def read_h5ad(path: Path):
    """Read an .h5ad file, with errors that say what the path is instead of what h5py thought."""
    import anndata as ad

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist.")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; --data takes an .h5ad file.")
    try:
        return ad.read_h5ad(path)
    except (OSError, KeyError) as error:
        raise ValueError(f"{path} could not be read as an .h5ad file ({error}); is it complete and written by anndata?") from error


def match_rule(obs, rule: str):
    """Boolean mask [n_obs] of the rows of ``obs`` matching every ``key=value`` of ``rule`` (joined by '&')."""
    import numpy as np

    mask = np.ones(len(obs), dtype=bool)
    for part in rule.split("&"):
        key, sep, value = part.partition("=")
        if not sep:
            raise typer.BadParameter(f"{rule!r}: each part must be key=value.")
        if key not in obs:
            raise KeyError(f"obs column {key!r} not found; available: {list(obs.columns)}")
        mask &= (obs[key].astype(str) == value).to_numpy()
    return mask


def refuse_overwriting_input(out: Path, *inputs: Path) -> None:
    """Raise ValueError when ``out`` is one of ``inputs`` (same file, after resolving links)."""
    out = Path(out)
    for path in inputs:
        if path is None:
            continue
        path = Path(path)
        if out.resolve() == path.resolve() or (out.exists() and path.exists() and out.samefile(path)):
            raise ValueError(f"--out {out} is the input {path}; write the output to another path "
                             "(virtualcell never writes over its input).")
