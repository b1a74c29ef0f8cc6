"""The one Typer application every command module adds its commands to."""

from __future__ import annotations

import typer

from .errors import ErrorBoundaryGroup

__all__ = ["app"]

app = typer.Typer(
    name="virtualcell",
    help="Composable AI virtual cells: fit encoder + manipulator + decoder pipelines on AnnData and "
         "predict how cells respond to conditions they were never measured in.\n\n"
         "Start with `virtualcell demo`, then `virtualcell info` to see the registered components.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=ErrorBoundaryGroup,  # every command runs inside its error boundary (see .errors)
)
