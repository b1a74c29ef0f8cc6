"""``virtualcell benchmark represent``: encoders side by side on label transfer across a perturbation."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .benchmark_app import benchmark_app, parse_list
from .benchmark_app import command_line as _command_line
from .common import check_output_file, refuse_overwriting_input
from .options import GRAMMAR, parse_component_options, parse_options
from .params import DeviceOption, OverwriteFile, SeedOption


@benchmark_app.command("represent", help="Fit each encoder (and a calibrated label decoder) on the control cells, "
                                         "predict the labels of the perturbed cells: accuracy, macro-F1, kNN purity, "
                                         "silhouettes, seconds; encoders side by side in one run.")
def represent(
    ctx: typer.Context,
    data: Path = typer.Option(..., "--data", help="The .h5ad dataset (e.g. kang_ifnb_full.h5ad).", exists=True,
                              dir_okay=False),
    out: Path = typer.Option(..., "--out", help="Where to write the report (.json)."),
    encoders: str = typer.Option("pca,vae,transformer", "--encoders", help="Comma-separated registered encoders."),
    encoder_option: Optional[list[str]] = typer.Option(
        None, "--encoder-option", help=f"Encoder option {GRAMMAR}; KEY=VALUE applies to every listed encoder, "
                                       "NAME.KEY=VALUE to one (e.g. transformer.max_epochs=3)."),
    decoder_option: Optional[list[str]] = typer.Option(None, "--decoder-option", help=f"label-decoder option {GRAMMAR}."),
    label_key: str = typer.Option("cell_type_coarse", "--label-key", help="obs column of the labels to transfer."),
    condition_key: str = typer.Option("condition", "--condition-key", help="obs column of conditions."),
    control: str = typer.Option("control", "--control", help="Label of the unperturbed (training) cells."),
    exclude: str = typer.Option("Megakaryocyte,Erythrocyte", "--exclude-labels", help="Labels dropped (too few cells)."),
    preprocess: str = typer.Option("kang-full", "--preprocess", help="none, auto, log1p or kang-full (the protocol of docs/evaluation.md: kang-full)."),
    max_cells: Optional[int] = typer.Option(None, "--max-cells", help="At most this many cells per condition (seeded)."),
    seed: SeedOption = 0,
    device: DeviceOption = "cpu",
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    overwrite: OverwriteFile = False,
) -> None:
    from ..data.checks import DataError
    from ..evaluate.represent import run_represent
    from ..execution import torch_threads
    from ..registry.registry import PluginImportError, UnknownComponentError

    try:
        refuse_overwriting_input(out, data)
        check_output_file(out, overwrite=overwrite)
        names = parse_list(encoders) or []
        with torch_threads(threads):
            report = run_represent(data, encoders=names, encoder_kwargs=parse_component_options(encoder_option, names),
                                   decoder_kwargs=parse_options(decoder_option, "--decoder-option"), label_key=label_key,
                                   condition_key=condition_key, control=control, exclude_labels=parse_list(exclude) or (),
                                   preprocess=None if preprocess.lower() == "none" else preprocess, max_cells=max_cells,
                                   seed=seed, device=device, progress=not quiet, out=out,
                                   command=_command_line(ctx))
    except (DataError, ValueError, OSError, UnknownComponentError, PluginImportError) as error:
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2) from None   # user errors exit 2, as in every command
    typer.echo(f"represent: {report['protocol']['n_reference']} reference, {report['protocol']['n_query']} query cells -> {out}")
    for name, m in report["results"].items():
        typer.echo(f"  {name}: accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}, kNN purity {m['knn_purity']:.3f}, "
                   f"silhouette type {m['silhouette_cell_type']:.3f} / condition {m['silhouette_condition']:.3f}, "
                   f"fit {m['fit_seconds']:.1f} s")
