"""Options shared by several commands, declared once (``device: DeviceOption = "cpu"`` in a signature)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

__all__ = ["DeviceOption", "SeedOption", "OverwriteFile", "CellsOption"]

DeviceOption = Annotated[str, typer.Option("--device", help="cpu, cuda, mps or auto.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Seeds every stochastic step.")]
OverwriteFile = Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out file.")]
CellsOption = Annotated[Optional[str], typer.Option(
    "--cells", help="Only cells matching 'key=value[&key=value]', e.g. 'cell_type=CD4T&condition=control'.")]
