"""The ``virtualcell`` command line.

One module a command group (``core``: info, demo, fit, predict; ``store``: embed, query; ``hub``:
publish, pull; ``benchmark``: the EVALUATION.md protocols). Each adds its commands to the one
:data:`app` of :mod:`.app`; importing the module is what registers them.
"""

from __future__ import annotations

from . import core, hub, store  # noqa: F401  (importing registers the commands)
from .app import app
from .common import match_rule, parse_options

__all__ = ["app", "main", "parse_options", "match_rule"]

from ..evaluate.commands import benchmark_app  # noqa: E402

app.add_typer(benchmark_app, name="benchmark",
              help="Run the EVALUATION.md protocols (oos, ood, pert) with baselines beside the method.")


def main() -> None:
    """Console-script entry point."""
    app()
