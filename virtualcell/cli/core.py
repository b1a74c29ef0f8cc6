"""Core commands: demo, fit, predict (``info`` is in :mod:`.info`).

Errors are left to the CLI's error boundary (``.errors``); these commands check their paths first,
so that nothing is read or computed for an output that cannot be written, and never write over an input.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import typer

from .app import app
from .errors import show_warnings
from .common import check_output_file, check_output_folder, cli_device, read_cells, read_h5ad, refuse_overwriting_input
from .options import GRAMMAR, apply_epochs, check_options, epoch_option, parse_options, resolve_preprocess
from .history import check_plot_path, plot_pipeline_history
from .split import apply_excludes, context_key_warning, training_card
from .params import CellsOption, DeviceOption, OverwriteFile, SeedOption
from .fit_scale import CheckpointEveryOption, CheckpointOption


@app.command()
def demo(
    out: Path = typer.Option(Path("virtualcell-demo"), help="Folder for the plot, the table and the fitted pipeline "
                                                           "(a previous demo's folder is replaced, nothing else)."),
    encoder: str = typer.Option("pca", help="Encoder to compose (see `virtualcell info`)."),
    manipulator: str = typer.Option("latent-arithmetic", help="Manipulator to compose."),
    held_out: str = typer.Option("type_0", help="Cell type whose stimulated cells are hidden from training."),
    n_cell_types: int = typer.Option(4, min=2, help="Simulated cell types."),
    n_genes: int = typer.Option(200, min=10, help="Simulated genes."),
    seed: int = typer.Option(0, help="Seed for the simulation and every stochastic step."),
) -> None:
    """The main job on built-in data: simulate a perturbation with known ground truth, hide one cell
    type's response, predict it with encoder + manipulator beside the `control` and `mean-shift`
    baselines, print the metrics and write a plot."""
    from ..demo import run_demo

    # re-running the demo into its own folder is fine; a folder of anything else is refused (docs/cli.md)
    check_output_folder(out, overwrite=True, replaces="metrics.json")
    run_demo(out=out, encoder=encoder, manipulator=manipulator, held_out=held_out,
             n_cell_types=n_cell_types, n_genes=n_genes, seed=seed)


@app.command()
def fit(
    data: Path = typer.Option(..., help="Training .h5ad (with --from-disk also a .zarr, or a folder of .h5ad/.zarr "
                                        "shards: one dataset, in name order)."),
    out: Path = typer.Option(..., help="Folder to save the fitted pipeline in."),
    encoder: str = typer.Option("pca", help="Encoder name (`virtualcell info NAME` lists its options)."),
    manipulator: str = typer.Option("latent-arithmetic", help="Manipulator name."),
    decoder: Optional[str] = typer.Option(None, help="Decoder name (default: the encoder's own inverse)."),
    encoder_option: Optional[list[str]] = typer.Option(None, help=f"Encoder option {GRAMMAR}."),
    manipulator_option: Optional[list[str]] = typer.Option(None, help=f"Manipulator option {GRAMMAR}."),
    decoder_option: Optional[list[str]] = typer.Option(None, help=f"Decoder option {GRAMMAR} (needs --decoder)."),
    epochs: Optional[int] = typer.Option(None, min=1, help="Training epochs of every component that trains "
                                                           "(its max_epochs or epochs option)."),
    condition_key: str = typer.Option("condition", help="obs column with each cell's condition."),
    control: str = typer.Option("control", help="Label of unperturbed cells."),
    context_key: Optional[str] = typer.Option(None, help="obs column of contexts (cell types), if any."),
    covariate: Optional[list[str]] = typer.Option(None, help="Numeric obs column handed to the manipulator (dose, time)."),
    exclude: Optional[list[str]] = typer.Option(None, help="Drop cells before fitting: 'key=value[&key=value]' (repeatable), "
                                                             "e.g. 'cell_type=CD4T&condition=stimulated' to hold a response out."),
    preprocess: str = typer.Option("auto", help="auto (raw counts -> log1p, else none), none (X is log-normalised), "
                                                "log1p, counts or kang-full."),
    layer: Optional[str] = typer.Option(None, help="Layer holding the expression (default X)."),
    plot: Optional[Path] = typer.Option(None, help="Also draw the training history (losses per epoch, the epoch whose "
                                                   "weights were saved) of the trained component to this PNG."),
    device: DeviceOption = "cpu",
    seed: SeedOption = 0,
    overwrite: bool = typer.Option(False, help="Replace an existing --out folder (and --plot file)."),
    from_disk: bool = typer.Option(False, "--from-disk", help="Train from the file on disk without reading its matrix "
                                                              "into memory (encoder vae only; docs/scale.md)."),
    nproc: Optional[int] = typer.Option(None, help="Train in N data-parallel processes (torch.distributed.run; gloo on "
                                                   "CPU, NCCL on CUDA, one GPU each); implies --from-disk; rank 0 saves."),
    checkpoint: Optional[Path] = CheckpointOption,
    checkpoint_every: int = CheckpointEveryOption,
) -> None:
    """Fit a pipeline on an AnnData file and save it as one folder (its model card records the training split)."""
    device = cli_device(device)
    refuse_overwriting_input(out, data)
    check_output_folder(out, overwrite=overwrite, replaces="pipeline.json")
    if plot is not None:
        check_plot_path(plot)
        refuse_overwriting_input(plot, data)
        check_output_file(plot, overwrite=overwrite, option="--plot")
    if decoder_option and decoder is None:
        raise ValueError("--decoder-option needs --decoder NAME (without it the encoder decodes itself).")
    specs = {"--encoder-option": {"name": encoder, **parse_options(encoder_option, "--encoder-option")},
             "--manipulator-option": {"name": manipulator, **parse_options(manipulator_option, "--manipulator-option")}}
    if decoder is not None:
        specs["--decoder-option"] = {"name": decoder, **parse_options(decoder_option, "--decoder-option")}
    for flag, spec in specs.items():
        check_options(spec["name"], spec, flag)
    apply_epochs(epochs, specs)
    if plot is not None and not any(epoch_option(spec["name"]) for spec in specs.values()):
        raise ValueError(f"--plot draws the losses of a component trained for epochs, and none of "
                         f"{[spec['name'] for spec in specs.values()]} is (they are fitted in closed form); drop "
                         "--plot, or choose a trained component such as --encoder vae.")
    from .fit_scale import checkpoint_options

    fit_extra = checkpoint_options(specs, checkpoint, checkpoint_every, from_disk=from_disk or nproc is not None)
    if from_disk or nproc is not None:     # docs/scale.md; the processes of --nproc re-run this with --from-disk
        from .fit_scale import check_disk_fit, in_worker, launch_processes, leave_unless_main, read_disk_source, worker_device

        check_disk_fit(specs, data, nproc=nproc, exclude=exclude or [], device=device)
        if nproc is not None and not in_worker():
            return launch_processes(nproc, out, checkpoint)
        cells, probe = read_disk_source(data, layer)
        adata = apply_excludes(cells, exclude or [], condition_key=condition_key)   # a DiskCells: nothing read
        obs, n_cells, n_fitted, device = adata.obs, cells.n_obs, adata.n_obs, worker_device(device)
    else:
        adata = read_h5ad(data)
        n_cells = adata.n_obs
        adata = apply_excludes(adata, exclude or [], condition_key=condition_key)
        obs, probe, n_fitted = adata.obs, adata, adata.n_obs
    warning = context_key_warning(obs, exclude or [], context_key=context_key, condition_key=condition_key)
    if warning:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
    recipe = resolve_preprocess(preprocess, probe, layer)
    pipeline = _fit_pipeline(specs, adata, recipe=recipe, device=device, skip=("MissingContextWarning",) if warning else (),
                             condition_key=condition_key, control=control, context_key=context_key,
                             covariate_keys=covariate or (), layer=layer, seed=seed, **fit_extra)
    if from_disk:
        leave_unless_main()                # with --nproc: only rank 0 goes on to save
    card = training_card(data, exclude or [], n_cells=n_cells, n_fitted=n_fitted, condition_key=condition_key,
                         control=control, context_key=context_key, preprocess=recipe)
    pipeline.save(out, overwrite=overwrite, card=card)
    typer.echo(f"saved the fitted pipeline to {out} ({n_fitted} cells, conditions {pipeline.metadata['conditions']})")
    if plot is not None:
        message = plot_pipeline_history(out, plot)
        typer.secho(message, err=message.startswith("warning"))


def _fit_pipeline(specs: dict, adata, *, recipe: str | None, device: str, skip: tuple[str, ...], **fit_kwargs):
    """Build and fit the pipeline; its warnings are printed in the CLI's terms, a TypeError names the options."""
    from ..pipelines import PerturbationPipeline

    try:
        with warnings.catch_warnings(record=True) as caught:
            pipeline = PerturbationPipeline(specs["--encoder-option"], specs["--manipulator-option"],
                                            specs.get("--decoder-option"), preprocess=recipe, device=device)
            pipeline.fit(adata, **fit_kwargs)
    except TypeError as error:
        given = {flag: spec for flag, spec in specs.items() if len(spec) > 1}
        if not given:
            raise
        shown = "; ".join(f"{flag} {spec}" for flag, spec in given.items())
        raise TypeError(f"{error}; check {shown} against the components' options (`virtualcell info "
                        f"{next(iter(given.values()))['name']}` lists names, types and defaults).") from error
    show_warnings(caught, skip=skip)
    return pipeline


@app.command()
def predict(
    pipeline: Path = typer.Option(..., help="A folder written by `virtualcell fit` (or Pipeline.save)."),
    data: Path = typer.Option(..., help=".h5ad with the cells to move."),
    target: str = typer.Option(..., help="Condition to predict them under."),
    out: Path = typer.Option(..., help="Output .h5ad of predicted cells (written atomically; never over --data)."),
    cells: CellsOption = None,
    source: Optional[str] = typer.Option(None, help="Their current condition when the data has no condition column."),
    n_samples: int = typer.Option(1, min=1, help="Samples per cell (stochastic manipulators): adds variance and q05/q95 layers."),
    context_effect_scale: float = typer.Option(1.0, min=0.0, help="With n-samples > 1: scale of the random effect of a context whose response was not seen in fit (0: the model's spread alone)."),
    device: DeviceOption = "cpu",
    seed: SeedOption = 0,
    overwrite: OverwriteFile = False,
) -> None:
    """Predict cells under a target condition with a saved pipeline (from fit or select); writes an .h5ad."""
    from ..evaluate.report import write_h5ad
    from ..selection import load_selected

    device = cli_device(device)
    refuse_overwriting_input(out, data, pipeline)
    check_output_file(out, overwrite=overwrite)
    model = load_selected(pipeline, device=device)
    adata = read_cells(data, cells)
    predicted = model.predict(adata, target=target, source=source, n_samples=n_samples, seed=seed,
                              context_effect_scale=context_effect_scale)
    write_h5ad(predicted, out)
    typer.echo(f"wrote {predicted.n_obs} predicted cells x {predicted.n_vars} genes under {target!r} to {out}")
