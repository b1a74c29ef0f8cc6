"""``virtualcell info [NAME]``: the environment and every registered component, or one component's options.

A component's options come from its class: the names, types and defaults of ``__init__``'s signature,
and the first line each has in the ``Args:`` section of the class docstring (``a, b: text`` documents
both ``a`` and ``b``).
"""

from __future__ import annotations

import inspect
import re
import warnings
from typing import Any, Optional

import typer

from .app import app

__all__ = ["component_options", "info"]

_ENTRY = re.compile(r"^(\s*)([A-Za-z_][\w, ]*?)\s*:\s*(.*)$")
_SECTIONS = ("Args:", "Arguments:", "Parameters:")


def _first_sentence(text: str, limit: int = 110) -> str:
    sentence = re.split(r"(?<=\.)\s+(?=[A-Z])", text.strip(), maxsplit=1)[0]
    return sentence if len(sentence) <= limit else sentence[: limit - 3].rstrip() + "..."


def _arg_docs(doc: str | None) -> dict[str, str]:
    """``{argument: first sentence of its doc}`` from a Google-style ``Args:`` section."""
    lines = inspect.cleandoc(doc or "").splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() in _SECTIONS), None)
    if start is None:
        return {}
    entries: list[tuple[list[str], str]] = []
    indent = None
    for line in lines[start + 1:]:
        if not line.strip():
            continue
        width = len(line) - len(line.lstrip())
        if width == 0:
            break                                      # the next section or paragraph
        match = _ENTRY.match(line)
        if match and (indent is None or width == indent):
            indent = width
            entries.append(([n.strip() for n in match.group(2).split(",")], match.group(3).strip()))
        elif entries:                                  # a continuation line of the last entry
            names, text = entries[-1]
            entries[-1] = (names, f"{text} {line.strip()}")
    return {name: _first_sentence(text) for names, text in entries for name in names}


def _type_name(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return ""
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))


def component_options(name: str) -> list[dict[str, str]]:
    """One row per init option of the registered component ``name``: name, type, default, doc (first line)."""
    from ..registry import registry

    cls = registry.get(name)
    docs = {**_arg_docs(getattr(cls.__init__, "__doc__", None)), **_arg_docs(cls.__doc__)}
    rows = []
    for parameter in inspect.signature(cls).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        default = "(required)" if parameter.default is parameter.empty else repr(parameter.default)
        rows.append({"name": parameter.name, "type": _type_name(parameter.annotation), "default": default,
                     "doc": docs.get(parameter.name, "")})
    return rows


def _show_component(console, name: str) -> None:
    from rich.markup import escape
    from rich.table import Table

    from ..registry import registry

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cls = registry.get(name)
    for warning in caught:
        console.print(f"[yellow]warning:[/yellow] {escape(str(warning.message))}")
    summary = (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")
    console.print(escape(f"{name} ({cls.kind}): {cls.__module__}.{cls.__qualname__}"))
    if summary:
        console.print(escape(summary))
    rows = component_options(name)
    if not rows:
        console.print(f"{name} takes no options.")
        return
    table = Table(title=f"options of {name} (pass as --{cls.kind}-option KEY=VALUE; VALUE read as JSON, else text)")
    for column in ("name", "type", "default", "doc"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(escape(row[key]) for key in ("name", "type", "default", "doc")))
    console.print(table)


def _show_all(console) -> None:
    import platform

    import torch
    from rich.table import Table

    from ..registry import registry
    from ..registry.artifact import package_version

    console.print(f"virtualcell {package_version('virtualcell')}  python {platform.python_version()}  torch {torch.__version__}")
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "not available"
    mps = torch.backends.mps.is_available() if getattr(torch.backends, "mps", None) else False
    console.print(f"devices: cpu ({torch.get_num_threads()} threads)  cuda: {cuda}  mps: {'yes' if mps else 'no'}")
    table = Table(title="registered components (entry-point group virtualcell.components)")
    for column in ("name", "kind", "class", "package", "status"):
        table.add_column(column)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = registry.describe()
    for row in rows:
        table.add_row(row["name"], row["kind"], row["class"], row["distribution"], row["status"])
    console.print(table)
    console.print("`virtualcell info NAME` lists a component's options.")
    for warning in caught:
        console.print(f"[yellow]warning:[/yellow] {warning.message}")


@app.command()
def info(name: Optional[str] = typer.Argument(None, help="A registered component: show its options.")) -> None:
    """Show the version, the compute devices and every registered component; with NAME, that component's options."""
    from rich.console import Console

    console = Console(width=None if Console().is_terminal else 160)
    if name is None:
        _show_all(console)
    else:
        _show_component(console, name)
