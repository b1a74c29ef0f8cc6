"""``virtualcell benchmark pert-unseen``: leave one target out, predict its knockout (see ``evaluate/pert_unseen``).

    virtualcell benchmark pert-unseen --data papalexi2021_crispr_thp1.h5ad --out out/pert-unseen \\
        --manipulator gene-network --manipulator-option network=knn
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .benchmark_app import (ConditionKey, Control, CountsPreprocess, Data, Device, DropConditions, ManipulatorOptions,
                            NoPlots, NTop, Out, Overwrite, Quiet, Seed, Threads, benchmark_app, parse_list, parse_names)
from .benchmark_app import command_line as _command_line
from .options import parse_options

NoBaselines = Annotated[bool, typer.Option("--no-baselines", help="Skip mean-perturbation, nearest-target and control.")]


@benchmark_app.command("pert-unseen", help="Unseen targets: hold each targeted gene out in turn (all its cells), train "
                                           "on the rest, predict its knockout from the control cells; beside the "
                                           "mean-perturbation, nearest-target and control baselines.")
def pert_unseen(
    ctx: typer.Context,
    data: Data,
    out: Out,
    manipulator: Annotated[str, typer.Option("--manipulator", help="Registered manipulator (gene space).")] = "gene-network",
    manipulator_option: ManipulatorOptions = None,
    encoder: Annotated[str, typer.Option("--encoder", help="Registered encoder.")] = "identity-encoder",
    condition_key: ConditionKey = "condition",
    control: Control = "control",
    drop_conditions: DropConditions = "ambiguous",
    targets: Annotated[Optional[str], typer.Option("--targets", help="Comma-separated targets to hold out.")] = None,
    min_cells: Annotated[int, typer.Option("--min-cells", help="Fewest cells of a held-out target.")] = 100,
    preprocess: CountsPreprocess = "log1p",
    seed: Seed = 0,
    no_baselines: NoBaselines = False,
    n_top: NTop = 100,
    device: Device = "cpu",
    threads: Threads = None,
    no_plots: NoPlots = False,
    quiet: Quiet = False,
    overwrite: Overwrite = False,
) -> None:
    from ..evaluate.pert_unseen import run_pert_unseen
    from ..execution import torch_threads
    from .common import refuse_overwriting_input

    refuse_overwriting_input(out, data)   # --out is a folder: never the --data file, nor a folder holding it
    spec = {"name": manipulator, **parse_options(manipulator_option, "--manipulator-option")}
    with torch_threads(threads):
        report = run_pert_unseen(data, methods={manipulator: (encoder, spec)}, baselines=not no_baselines,
                                 condition_key=condition_key, control=control,
                                 drop_conditions=parse_list(drop_conditions) or (), min_cells=min_cells,
                                 targets=parse_names(targets, "--targets"), preprocess=None if preprocess.lower() == "none" else preprocess,
                                 n_top=n_top, seed=seed, device=device, out=out, overwrite=overwrite, progress=not quiet,
                                 command=_command_line(ctx), write_predictions=True, plots=not no_plots)
    typer.echo(f"PERT-unseen: {len(report['common_targets'])} targets predicted by every method -> {out}")
    for label, means in report["means"].items():
        shown = ", ".join(f"{k} {means[k]:.3f}" for k in ("pearson_delta", "discrimination", "edistance_ratio")
                          if means.get(k) is not None)
        typer.echo(f"  {label}: {shown}")
    for label, refused in report["refused"].items():
        if refused:
            typer.echo(f"  {label} refused {len(refused)} target(s): {', '.join(sorted(refused)[:10])}")
