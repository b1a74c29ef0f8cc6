"""The ``virtualcell`` command line.

One module a command group (``info``; ``core``: demo, fit, predict; ``store``: embed, query; ``hub``:
publish, pull; ``benchmark``: the docs/evaluation.md protocols). Every command reads component options
in one grammar (:mod:`.options`, docs/cli.md). Each adds its commands to the one
:data:`app` of :mod:`.app`; importing the module is what registers them. Every command runs inside
one error boundary (:mod:`.errors`): a user error ends as ``error: <what is wrong and the fix>``
with exit code 2, never a traceback; ``--debug`` or ``VIRTUALCELL_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import sys

import typer

from . import annotate, core, hub, info, represent, screen, select, spatial, store  # noqa: F401  (importing registers the commands)
from .app import app
from .common import match_rule
from .options import parse_options

__all__ = ["app", "main", "parse_options", "match_rule"]

from .benchmark import benchmark_app  # noqa: E402
from . import pert_unseen  # noqa: E402,F401  (adds `benchmark pert-unseen` to benchmark_app)

app.add_typer(benchmark_app, name="benchmark",
              help="Run the docs/evaluation.md protocols (oos, ood, pert) with baselines beside the method.")


@app.callback()
def _global_options(
    debug: bool = typer.Option(False, "--debug",   # VIRTUALCELL_DEBUG is read leniently by .errors
                               help="Print the full traceback of an error (also VIRTUALCELL_DEBUG=1)."),
) -> None:
    """Options for every command (read by the error boundary in ``.errors``)."""


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: ``--debug`` is accepted anywhere before ``--``, errors end as one line."""
    args = list(sys.argv[1:] if argv is None else argv)
    end = args.index("--") if "--" in args else len(args)
    if "--debug" in args[:end]:
        args = ["--debug"] + [a for i, a in enumerate(args) if not (a == "--debug" and i < end)]
    app(args=args, prog_name="virtualcell")
