"""``virtualcell benchmark oos|ood|pert``: the command line of :func:`virtualcell.evaluate.run_benchmark`.

    virtualcell benchmark oos --data kang.h5ad --encoder pca --manipulator latent-arithmetic --out out/kang
    virtualcell benchmark ood --data kang.h5ad --encoder vae --encoder-option n_latent=50 --out out/kang-ood
    virtualcell benchmark pert --data papalexi.h5ad --out out/papalexi

The three commands share their options but for the split's (:data:`OOS_SPLIT`, :data:`PERT_SPLIT`);
each command's signature is composed from those lists, in the order ``--help`` shows.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, Optional

import click
import typer

from .benchmark_app import (ConditionKey, Conformal, Control, CountsPreprocess, Data, DecoderName, DecoderOptions,
                            Device, DropConditions, EncoderName, EncoderOptions, FromDisk, ManipulatorName,
                            ManipulatorOptions,
                            NoBaselines, NoPlots, NSamples, NTop, Out, Overwrite, Quiet, Seed, Threads, benchmark_app,
                            command_line, parse_list, parse_names)
from .options import parse_options

__all__ = ["benchmark_app", "OOS_SPLIT", "PERT_SPLIT"]

#: the means printed after a run
_SHOWN = ("r2_mean_all", "r2_mean_top100", "pearson_delta", "edistance_ratio", "mmd_ratio", "std_ratio_top100",
          "discrimination", "coverage90")


def _options(**specs: tuple[Any, Any]) -> list[inspect.Parameter]:
    """``name=(Annotated type, default)`` -> keyword parameters, in order."""
    return [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)
            for name, (annotation, default) in specs.items()]


_HEAD = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
         *_options(data=(Data, inspect.Parameter.empty), out=(Out, inspect.Parameter.empty)),
         *_options(encoder=(EncoderName, "pca"), manipulator=(ManipulatorName, "latent-arithmetic"),
                   decoder=(DecoderName, None), encoder_option=(EncoderOptions, None),
                   manipulator_option=(ManipulatorOptions, None), decoder_option=(DecoderOptions, None))]
_TAIL = _options(seed=(Seed, 0), no_baselines=(NoBaselines, False), n_top=(NTop, 100), device=(Device, "cpu"),
                 threads=(Threads, None), no_plots=(NoPlots, False), quiet=(Quiet, False),
                 overwrite=(Overwrite, False), n_samples=(NSamples, 1), conformal=(Conformal, False),
                 from_disk=(FromDisk, False))

_CSV = "Comma-separated"
#: the options of the OOS / OOD split (held-out contexts)
OOS_SPLIT = _options(
    context_key=(Annotated[str, typer.Option("--context-key", help="obs column of contexts (cell types).")], "cell_type"),
    condition_key=(ConditionKey, "condition"), control=(Control, "control"),
    target=(Annotated[str, typer.Option("--target", help="Label of the perturbed cells to predict.")], "stimulated"),
    contexts=(Annotated[Optional[str], typer.Option(
        "--contexts", help=f"{_CSV} contexts to hold out (default: all with >= --min-cells cells).")], None),
    exclude_contexts=(Annotated[Optional[str], typer.Option(
        "--exclude-contexts", help=f"{_CSV} contexts never held out (their cells still train).")], None),
    min_cells=(Annotated[int, typer.Option("--min-cells", help="Fewest control and target cells of a held-out context.")], 2),
    preprocess=(Annotated[str, typer.Option(
        "--preprocess", help="none (X is log-normalised), log1p or kang-full; applied once to all cells.")], "none"))
#: the options of the PERT split (a held-out replicate)
PERT_SPLIT = _options(
    condition_key=(ConditionKey, "condition"), control=(Control, "control"),
    replicate_key=(Annotated[str, typer.Option("--replicate-key", help="obs column of replicates.")], "bio_rep"),
    holdout=(Annotated[str, typer.Option("--holdout", help="The replicate held out for testing.")], "rep_3"),
    train_replicates=(Annotated[Optional[str], typer.Option(
        "--train-replicates", help=f"{_CSV} training replicates (default: all but --holdout).")], None),
    drop_conditions=(DropConditions, "ambiguous"),
    targets=(Annotated[Optional[str], typer.Option("--targets", help=f"{_CSV} targets to evaluate.")], None),
    min_cells=(Annotated[int, typer.Option("--min-cells", help="Fewest cells of a target in --holdout.")], 100),
    preprocess=(CountsPreprocess, "log1p"))


def _split_kwargs(protocol: str, o: dict[str, Any]) -> dict[str, Any]:
    """run_benchmark's split arguments from the parsed options ``o`` of ``protocol``'s command."""
    if protocol == "pert":
        return {"replicate_key": o["replicate_key"], "holdout": o["holdout"],
                "train_replicates": parse_list(o["train_replicates"]),
                "drop_conditions": parse_list(o["drop_conditions"]) or (), "contexts": parse_names(o["targets"], "--targets")}
    return {"context_key": o["context_key"], "target": o["target"], "contexts": parse_names(o["contexts"], "--contexts"),
            "exclude_contexts": parse_list(o["exclude_contexts"]) or ()}


def _run(ctx: click.Context, protocol: str, o: dict[str, Any]) -> None:
    """Parse the options ``o`` of ``protocol``'s command, run the benchmark and print its means."""
    from ..component import NotFittedError
    from ..data.checks import DataError
    from ..evaluate.benchmark import run_benchmark
    from ..execution import torch_threads
    from ..registry.registry import PluginImportError, UnknownComponentError
    from .common import refuse_overwriting_input

    refuse_overwriting_input(o["out"], o["data"])   # --out is a folder: never the --data file
    kwargs = dict(
        data=o["data"], protocol=protocol, out=o["out"], encoder=o["encoder"], manipulator=o["manipulator"],
        decoder=o["decoder"], encoder_kwargs=parse_options(o["encoder_option"], "--encoder-option"),
        manipulator_kwargs=parse_options(o["manipulator_option"], "--manipulator-option"),
        decoder_kwargs=parse_options(o["decoder_option"], "--decoder-option"), condition_key=o["condition_key"],
        control=o["control"], min_cells=o["min_cells"], **_split_kwargs(protocol, o),
        preprocess=None if o["preprocess"].lower() == "none" else o["preprocess"], seed=o["seed"],
        baselines=not o["no_baselines"], n_top=o["n_top"], device=o["device"], plots=not o["no_plots"],
        overwrite=o["overwrite"], n_samples=o["n_samples"], conformal=o["conformal"], from_disk=o["from_disk"])
    try:
        with torch_threads(o["threads"]):
            report = run_benchmark(progress=not o["quiet"], command=command_line(ctx), **kwargs)
    except (DataError, ValueError, FileExistsError, FileNotFoundError, UnknownComponentError, PluginImportError,
            NotFittedError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2) from None   # user errors exit 2, as in every command
    unit = "target" if report["protocol"] == "pert" else "context"
    typer.echo(f"{report['protocol'].upper()}: {len(report['contexts'])} {unit}s -> {o['out']}")
    for label, means in report["means"].items():
        shown = ", ".join(f"{k} {v:.3f}" for k, v in means.items()
                          if k in _SHOWN and v is not None)
        typer.echo(f"  {label}: {shown}")


def _command(protocol: str, split: list[inspect.Parameter]) -> Callable[..., None]:
    """The command of ``protocol``: the shared options with ``split``'s in the middle."""
    def command(ctx: typer.Context, **options: Any) -> None:
        _run(ctx, protocol, options)

    command.__signature__ = inspect.Signature([*_HEAD, *split, *_TAIL])  # type: ignore[attr-defined]
    command.__name__ = protocol
    return command


benchmark_app.command(
    "oos", help="Held-out context (scGen protocol): for each context, train on all cells but its perturbed ones, "
                "predict them from its control cells. The method sees the context column.")(_command("oos", OOS_SPLIT))
benchmark_app.command(
    "ood", help="The OOS split, but the method never sees the context column (CellGen protocol); "
                "the baselines still use it.")(_command("ood", OOS_SPLIT))
benchmark_app.command(
    "pert", help="Papalexi PERT task: train on all replicates but --holdout, predict each targeted "
                 "gene with >= --min-cells cells in --holdout from its control cells; one model.")(_command("pert", PERT_SPLIT))
