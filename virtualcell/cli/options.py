"""The one option grammar of every command (documented in docs/cli.md).

``--encoder-option``, ``--manipulator-option`` and ``--decoder-option`` each take ``KEY=VALUE`` and may
be repeated; ``VALUE`` is read as JSON (``50``, ``0.1``, ``true``, ``null``, ``[800, 800]``,
``"text"``) and, when it is not JSON, kept as text (``likelihood=nb``). ``KEY`` is the component's
init argument (``virtualcell info NAME`` lists them). Commands that take several components of one
role (``benchmark represent --encoders pca,vae``) also accept ``NAME.KEY=VALUE`` for one of them;
a plain ``KEY=VALUE`` there applies to every listed component.
"""

from __future__ import annotations

import difflib
import inspect
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import typer

__all__ = ["GRAMMAR", "parse_options", "parse_component_options", "check_options", "epoch_option",
           "apply_epochs", "resolve_preprocess"]

GRAMMAR = "KEY=VALUE (VALUE read as JSON, else as text); repeatable"
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_EPOCH_NAMES = ("max_epochs", "epochs", "n_epochs")


def _split(item: str, option: str) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise typer.BadParameter(f"{item!r} is not KEY=VALUE (e.g. {option} n_latent=50; VALUE is read as JSON, "
                                 "else as text).", param_hint=option)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def parse_options(items: Iterable[str] | None, option: str = "--encoder-option") -> dict[str, Any]:
    """``["n_latent=50", "hidden=[800,800]", "likelihood=nb"]`` -> ``{"n_latent": 50, "hidden": [800, 800],
    "likelihood": "nb"}``; ``option`` (the flag, e.g. ``--decoder-option``) names the flag in errors."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, value = _split(item, option)
        if not _KEY.match(key):
            hint = (" (NAME.KEY=VALUE is only for commands that take several components of one role, such as "
                    "benchmark represent)" if "." in key else "")
            raise typer.BadParameter(f"{item!r}: KEY {key!r} is not an option name{hint}; write KEY=VALUE.",
                                     param_hint=option)
        out[key] = value
    return out


def parse_component_options(items: Iterable[str] | None, names: Iterable[str],
                            option: str = "--encoder-option") -> dict[str, dict[str, Any]]:
    """Options of several components of one role: ``NAME.KEY=VALUE`` for one, ``KEY=VALUE`` for all ``names``.

    ``["vae.n_latent=50", "seed_offset=1"]`` with names ``["pca", "vae"]`` ->
    ``{"pca": {"seed_offset": 1}, "vae": {"n_latent": 50, "seed_offset": 1}}``.
    """
    names = list(names)
    out: dict[str, dict[str, Any]] = {name: {} for name in names}
    for item in items or []:
        key, value = _split(item, option)
        prefix, dot, key = key.rpartition(".") if "." in key else ("", "", key)
        if not _KEY.match(key):
            raise typer.BadParameter(f"{item!r}: KEY {key!r} is not an option name; write KEY=VALUE or "
                                     "NAME.KEY=VALUE.", param_hint=option)
        if dot and prefix not in out:
            raise typer.BadParameter(f"{item!r} names {prefix!r}, which is not one of the listed components "
                                     f"{names}.", param_hint=option)
        for name in [prefix] if dot else names:
            out[name][key] = value
    return out


def _signature_options(cls: type) -> tuple[list[str], bool]:
    """Keyword names ``cls(...)`` accepts, and whether it takes ``**kwargs``."""
    parameters = list(inspect.signature(cls).parameters.values())
    named = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return named, any(p.kind == p.VAR_KEYWORD for p in parameters)


def check_options(name: str, options: Mapping[str, Any], option: str) -> None:
    """Refuse an option the registered component ``name`` does not take, pointing to ``virtualcell info NAME``."""
    from ..registry import registry

    named, open_ended = _signature_options(registry.get(name))
    unknown = [key for key in options if key != "name" and key not in named]
    if unknown and not open_ended:
        close = difflib.get_close_matches(unknown[0], named, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise TypeError(f"{option} {unknown[0]}: {name!r} has no option {unknown[0]!r}.{hint} Its options: "
                        f"{', '.join(named) or '(none)'}; see `virtualcell info {name}` for types, defaults and docs.")


def epoch_option(name: str) -> str | None:
    """The init argument that sets the number of training epochs of component ``name`` (None: it has none)."""
    from ..registry import registry

    named, _ = _signature_options(registry.get(name))
    return next((key for key in _EPOCH_NAMES if key in named), None)


def apply_epochs(epochs: int | None, specs: Mapping[str, dict[str, Any]]) -> list[str]:
    """Set ``epochs`` on every component of ``specs`` (``{flag: {"name": ..., **options}}``) that trains for
    epochs; returns the ``name.option`` set. An option given twice, or no component that trains, is an error."""
    if epochs is None:
        return []
    done = []
    for flag, spec in specs.items():
        key = epoch_option(spec["name"])
        if key is None:
            continue
        if key in spec and spec[key] != epochs:
            raise ValueError(f"--epochs {epochs} and {flag} {key}={spec[key]} disagree; pass one of them.")
        spec[key] = epochs
        done.append(f"{spec['name']}.{key}")
    if not done:
        names = [spec["name"] for spec in specs.values()]
        raise ValueError(f"--epochs {epochs}: none of {names} trains for epochs (no max_epochs or epochs option); "
                         "drop --epochs, or choose a trained component such as --encoder vae.")
    return done


def resolve_preprocess(preprocess: str, adata, layer: str | None = None, option: str = "--preprocess") -> str | None:
    """The recipe for ``--preprocess``: ``auto`` -> ``log1p`` when the expression holds raw counts, else None
    (X already log-normalised); ``none`` -> None; a preset name is passed on as it is."""
    from ..data.checks import looks_like_counts
    from ..data.preprocess import PRESETS, get_matrix

    choice = preprocess.strip().lower()
    if choice == "none":
        return None
    if choice != "auto":
        if choice not in PRESETS:
            raise ValueError(f"{option} {preprocess!r} is not a recipe; choose auto, {', '.join(sorted(PRESETS))}.")
        return choice
    if looks_like_counts(get_matrix(adata, layer)):
        typer.secho(f"{option} auto: the expression holds raw counts, so it is normalised and log1p-transformed "
                    f"(pass {option} counts to keep counts, for count-likelihood models).", err=True)
        return "log1p"
    return None
