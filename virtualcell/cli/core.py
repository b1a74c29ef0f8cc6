"""Core commands: info, demo, fit, predict.

Errors are left to the CLI's error boundary (``.errors``); these commands check their paths first,
so that nothing is read or computed for an output that cannot be written, and never write over an input.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import typer

from .app import app
from .common import (check_output_file, check_output_folder, cli_device, match_rule, parse_options, read_h5ad,
                     refuse_overwriting_input, select_cells)


@app.command()
def info() -> None:
    """Show the version, the compute devices torch sees, and every registered component."""
    import platform

    import torch
    from rich.console import Console
    from rich.table import Table

    import virtualcell
    from ..registry import registry

    console = Console(width=None if Console().is_terminal else 140)
    console.print(f"virtualcell {virtualcell.__version__}  python {platform.python_version()}  torch {torch.__version__}")
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
    for warning in caught:
        console.print(f"[yellow]warning:[/yellow] {warning.message}")


@app.command()
def demo(
    out: Path = typer.Option(Path("virtualcell-demo"), help="Folder for the plot, the table and the fitted pipeline."),
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

    check_output_folder(out, overwrite=True)       # re-running the demo into its own folder is fine
    run_demo(out=out, encoder=encoder, manipulator=manipulator, held_out=held_out,
             n_cell_types=n_cell_types, n_genes=n_genes, seed=seed)


def _options_error(error: TypeError, encoder: dict, manipulator: dict) -> TypeError:
    return TypeError(f"{error}; check --encoder-option {encoder} and --manipulator-option {manipulator} against "
                     "the components' arguments (names and types; `virtualcell info` lists the components).")


@app.command()
def fit(
    data: Path = typer.Option(..., help="Training .h5ad."),
    out: Path = typer.Option(..., help="Folder to save the fitted pipeline in."),
    encoder: str = typer.Option("pca", help="Encoder name."),
    manipulator: str = typer.Option("latent-arithmetic", help="Manipulator name."),
    decoder: Optional[str] = typer.Option(None, help="Decoder name (default: the encoder's own inverse)."),
    encoder_option: Optional[list[str]] = typer.Option(None, help="Encoder init option key=value (repeatable)."),
    manipulator_option: Optional[list[str]] = typer.Option(None, help="Manipulator init option key=value (repeatable)."),
    condition_key: str = typer.Option("condition", help="obs column with each cell's condition."),
    control: str = typer.Option("control", help="Label of unperturbed cells."),
    context_key: Optional[str] = typer.Option(None, help="obs column of contexts (cell types), if any."),
    covariate: Optional[list[str]] = typer.Option(None, help="Numeric obs column handed to the manipulator (dose, time)."),
    exclude: Optional[list[str]] = typer.Option(None, help="Drop cells before fitting: 'key=value[&key=value]' (repeatable), "
                                                             "e.g. 'cell_type=CD4T&condition=stimulated' to hold a response out."),
    preprocess: str = typer.Option("none", help="'none' (X is log-normalised), 'log1p' or 'kang-full' (raw counts in)."),
    layer: Optional[str] = typer.Option(None, help="Layer holding the expression (default X)."),
    device: str = typer.Option("cpu", help="cpu, cuda, mps or auto."),
    seed: int = typer.Option(0, help="Seed."),
    overwrite: bool = typer.Option(False, help="Replace an existing --out folder."),
) -> None:
    """Fit a pipeline on an AnnData file and save it as one folder."""
    from ..pipelines import PerturbationPipeline

    device = cli_device(device)
    refuse_overwriting_input(out, data)
    check_output_folder(out, overwrite=overwrite, replaces="pipeline.json")
    enc = {"name": encoder, **parse_options(encoder_option, "encoder")}
    man = {"name": manipulator, **parse_options(manipulator_option, "manipulator")}
    adata = read_h5ad(data)
    for rule in exclude or []:
        adata = adata[~match_rule(adata.obs, rule, "--exclude")].copy()
    if adata.n_obs == 0:
        raise ValueError(f"No cells left to fit on: --exclude {exclude} removed all of them." if exclude
                         else f"--data {data} holds no cells.")
    try:
        pipeline = PerturbationPipeline(enc, man, decoder, preprocess=preprocess, device=device)
        pipeline.fit(adata, condition_key=condition_key, control=control, context_key=context_key,
                     covariate_keys=covariate or (), layer=layer, seed=seed)
    except TypeError as error:
        if encoder_option or manipulator_option:
            raise _options_error(error, enc, man) from error
        raise
    pipeline.save(out, overwrite=overwrite)
    typer.echo(f"saved the fitted pipeline to {out} ({adata.n_obs} cells, conditions {pipeline.metadata['conditions']})")


@app.command()
def predict(
    pipeline: Path = typer.Option(..., help="A folder written by `virtualcell fit` (or Pipeline.save)."),
    data: Path = typer.Option(..., help=".h5ad with the cells to move."),
    target: str = typer.Option(..., help="Condition to predict them under."),
    out: Path = typer.Option(..., help="Output .h5ad of predicted cells (written atomically; never over --data)."),
    cells: Optional[str] = typer.Option(None, help="Only cells matching 'key=value[&key=value]', e.g. 'cell_type=CD4T&condition=control'."),
    source: Optional[str] = typer.Option(None, help="Their current condition when the data has no condition column."),
    n_samples: int = typer.Option(1, min=1, help="Samples per cell (stochastic manipulators): adds variance and q05/q95 layers."),
    context_effect_scale: float = typer.Option(1.0, min=0.0, help="With n-samples > 1: scale of the random effect of a context whose response was not seen in fit (0: the model's spread alone)."),
    device: str = typer.Option("cpu", help="cpu, cuda, mps or auto."),
    seed: int = typer.Option(0, help="Seed."),
    overwrite: bool = typer.Option(False, help="Replace an existing --out file."),
) -> None:
    """Predict cells under a target condition with a saved pipeline (from fit or select); writes an .h5ad."""
    from ..evaluate.report import write_h5ad
    from ..evaluate.select import load_selected

    device = cli_device(device)
    refuse_overwriting_input(out, data, pipeline)
    check_output_file(out, overwrite=overwrite)
    model = load_selected(pipeline, device=device)
    adata = read_h5ad(data)
    if cells:
        adata = select_cells(adata, cells)
    predicted = model.predict(adata, target=target, source=source, n_samples=n_samples, seed=seed,
                              context_effect_scale=context_effect_scale)
    write_h5ad(predicted, out)
    typer.echo(f"wrote {predicted.n_obs} predicted cells x {predicted.n_vars} genes under {target!r} to {out}")
