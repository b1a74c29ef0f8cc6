"""``virtualcell screen``: an in-silico knockout screen with a saved pipeline, ranked into a TSV.

    virtualcell screen --pipeline model --data cells.h5ad --cells condition=control \\
        --targets STAT1,JAK2,CMTM6 --out ranked.tsv
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app
from .common import check_output_file, cli_device, read_cells, refuse_overwriting_input
from .params import CellsOption, DeviceOption, OverwriteFile, SeedOption


def _target_list(targets: list[str] | None, targets_file: Path | None) -> list[str]:
    names = [t.strip() for item in targets or [] for t in item.split(",") if t.strip()]
    if targets_file is not None:
        if not targets_file.is_file():
            raise FileNotFoundError(f"--targets-file {targets_file} does not exist.")
        names += [line.strip() for line in targets_file.read_text(encoding="utf-8").splitlines()
                  if line.strip() and not line.startswith("#")]
    return names


@app.command()
def screen(
    pipeline: Path = typer.Option(..., help="A folder written by `virtualcell fit` (e.g. --manipulator gene-network)."),
    data: Path = typer.Option(..., help=".h5ad holding the control cells to knock genes out in."),
    out: Path = typer.Option(..., help="Output TSV, one row per target ranked by effect (never over an input)."),
    targets: Optional[list[str]] = typer.Option(None, help="Genes to knock out, comma-separated and/or repeated."),
    targets_file: Optional[Path] = typer.Option(None, help="A text file with one target per line (adds to --targets)."),
    cells: CellsOption = None,
    n_samples: int = typer.Option(1, min=1, help="Samples per cell: a stochastic manipulator's spread gives 'uncertainty'."),
    device: DeviceOption = "cpu",
    seed: SeedOption = 0,
    overwrite: OverwriteFile = False,
) -> None:
    """Predict every listed knockout from the same control cells; rank by effect size and by uncertainty."""
    from ..evaluate.report import write_text
    from ..pipelines import PerturbationPipeline
    from ..pipelines.screen import check_targets, screen as run_screen

    device = cli_device(device)
    refuse_overwriting_input(out, data, pipeline, targets_file)
    check_output_file(out, overwrite=overwrite)
    names = _target_list(targets, targets_file)
    model = PerturbationPipeline.load(pipeline, device=device)
    check_targets(model, names)                       # before reading the data: a bad target fails fast
    adata = read_cells(data, cells)
    table = run_screen(model, adata, names, n_samples=n_samples, seed=seed)
    write_text(out, table.to_csv(sep="\t", index=False, float_format="%.6g"))
    head = ", ".join(f"{t} ({e:.3f})" for t, e in zip(table["target"][:5], table["effect_size"][:5]))
    typer.echo(f"screened {len(table)} targets in {adata.n_obs} cells -> {out}; largest effects: {head}")
