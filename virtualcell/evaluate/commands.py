"""``virtualcell benchmark oos|ood|pert``: the command line of :func:`.benchmark.run_benchmark`.

The main CLI mounts this app with ``app.add_typer(benchmark_app, name="benchmark")``.

    virtualcell benchmark oos --data kang.h5ad --encoder pca --manipulator latent-arithmetic --out out/kang
    virtualcell benchmark ood --data kang.h5ad --encoder vae --encoder-option n_latent=50 --out out/kang-ood
    virtualcell benchmark pert --data papalexi.h5ad --out out/papalexi
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Any, Optional

import click
import typer

__all__ = ["benchmark_app", "parse_options", "parse_list"]

benchmark_app = typer.Typer(help="Benchmark a method against the baselines and the noise ceiling (EVALUATION.md).",
                            no_args_is_help=True, add_completion=False)

# -- shared options --------------------------------------------------------------------------------
Data = Annotated[Path, typer.Option("--data", help="The .h5ad dataset.", exists=True, dir_okay=False, readable=True)]
Out = Annotated[Path, typer.Option("--out", help="Output folder (results.json, results.md, predictions/, plots/).")]
EncoderName = Annotated[str, typer.Option("--encoder", help="Registered encoder name, e.g. pca, vae.")]
ManipulatorName = Annotated[str, typer.Option(
    "--manipulator", help="Registered manipulator, e.g. latent-arithmetic; or auto: choose a pipeline by inner CV on "
                          "each task's training cells (docs/selection.md; options via --manipulator-option).")]
DecoderName = Annotated[Optional[str], typer.Option("--decoder", help="Registered decoder; default: the encoder's own.")]
EncoderOptions = Annotated[Optional[list[str]], typer.Option(
    "--encoder-option", help="Encoder init option KEY=VALUE (VALUE read as JSON, else text); repeatable.")]
ManipulatorOptions = Annotated[Optional[list[str]], typer.Option(
    "--manipulator-option", help="Manipulator init option KEY=VALUE; repeatable.")]
DecoderOptions = Annotated[Optional[list[str]], typer.Option(
    "--decoder-option", help="Decoder init option KEY=VALUE; repeatable.")]
ConditionKey = Annotated[str, typer.Option("--condition-key", help="obs column of conditions.")]
Control = Annotated[str, typer.Option("--control", help="Label of unperturbed cells in the condition column.")]
Seed = Annotated[int, typer.Option("--seed", help="Seeds every stochastic step; same seed, same numbers on CPU.")]
NoBaselines = Annotated[bool, typer.Option("--no-baselines", help="Skip the control and mean-shift baselines.")]
NTop = Annotated[int, typer.Option("--n-top", help="Number of top DEGs for the *_top metrics.")]
Device = Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")]
Threads = Annotated[Optional[int], typer.Option("--threads", min=1, help="torch CPU threads (default: torch's choice).")]
NoPlots = Annotated[bool, typer.Option("--no-plots", help="Skip the PNG plots.")]
Quiet = Annotated[bool, typer.Option("--quiet", help="No progress bars.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace the results already in --out.")]
DropConditions = Annotated[str, typer.Option(
    "--drop-conditions", help="Comma-separated condition labels removed before anything else.")]
CountsPreprocess = Annotated[str, typer.Option("--preprocess", help="log1p (counts), none or kang-full.")]
NSamples = Annotated[int, typer.Option(
    "--n-samples", help="With N >= 2, also predict N populations per unit and report coverage90 and interval width.")]


def parse_list(text: str | None) -> list[str] | None:
    """``"CD4T,B"`` -> ``["CD4T", "B"]``; None or empty -> None."""
    if not text:
        return None
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_options(items: list[str] | None, option: str) -> dict[str, Any]:
    """``["n_latent=50", "hidden=[800,800]", "name=x"]`` -> ``{"n_latent": 50, "hidden": [800, 800], "name": "x"}``."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE (e.g. {option} n_latent=50).", param_hint=option)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


#: the means printed after a run
_SHOWN = ("r2_mean_all", "r2_mean_top100", "pearson_delta", "edistance_ratio", "mmd_ratio", "std_ratio_top100",
          "discrimination", "coverage90")
_ALWAYS = {"encoder", "manipulator", "seed", "preprocess"}  # recorded even at their defaults


def _command_line(ctx: click.Context) -> str:
    """The invocation, rebuilt from the parsed options (those that differ from the default, and ``_ALWAYS``)."""
    words = ["virtualcell", "benchmark", ctx.info_name or ""]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or value == [] or not param.opts or (value == param.default and param.name not in _ALWAYS):
            continue
        flag = max(param.opts, key=len)
        if getattr(param, "is_flag", False):
            words.append(flag)
        elif isinstance(value, (list, tuple)):
            for v in value:
                words += [flag, str(v)]
        else:
            words += [flag, str(value)]
    return shlex.join(words)


def _run(ctx: click.Context, threads: int | None, quiet: bool, **kwargs: Any) -> None:
    from ..component import NotFittedError
    from ..data.checks import DataError
    from ..registry.registry import PluginImportError, UnknownComponentError
    from .benchmark import run_benchmark

    from ..cli.common import refuse_overwriting_input

    refuse_overwriting_input(kwargs["out"], kwargs["data"])   # --out is a folder: never the --data file
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    try:
        report = run_benchmark(progress=not quiet, command=_command_line(ctx), **kwargs)
    except (DataError, ValueError, FileExistsError, FileNotFoundError, UnknownComponentError, PluginImportError,
            NotFittedError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2) from None   # user errors exit 2, as in every command
    unit = "target" if report["protocol"] == "pert" else "context"
    typer.echo(f"{report['protocol'].upper()}: {len(report['contexts'])} {unit}s -> {kwargs['out']}")
    for label, means in report["means"].items():
        shown = ", ".join(f"{k} {v:.3f}" for k, v in means.items()
                          if k in _SHOWN and v is not None)
        typer.echo(f"  {label}: {shown}")


def _split_command(protocol: str):
    def command(
        ctx: typer.Context,
        data: Data,
        out: Out,
        encoder: EncoderName = "pca",
        manipulator: ManipulatorName = "latent-arithmetic",
        decoder: DecoderName = None,
        encoder_option: EncoderOptions = None,
        manipulator_option: ManipulatorOptions = None,
        decoder_option: DecoderOptions = None,
        context_key: Annotated[str, typer.Option("--context-key", help="obs column of contexts (cell types).")] = "cell_type",
        condition_key: ConditionKey = "condition",
        control: Control = "control",
        target: Annotated[str, typer.Option("--target", help="Label of the perturbed cells to predict.")] = "stimulated",
        contexts: Annotated[Optional[str], typer.Option(
            "--contexts", help="Comma-separated contexts to hold out (default: all with >= --min-cells cells).")] = None,
        exclude_contexts: Annotated[Optional[str], typer.Option(
            "--exclude-contexts", help="Comma-separated contexts never held out (their cells still train).")] = None,
        min_cells: Annotated[int, typer.Option("--min-cells", help="Fewest control and target cells of a held-out context.")] = 2,
        preprocess: Annotated[str, typer.Option(
            "--preprocess", help="none (X is log-normalised), log1p or kang-full; applied once to all cells.")] = "none",
        seed: Seed = 0,
        no_baselines: NoBaselines = False,
        n_top: NTop = 100,
        device: Device = "cpu",
        threads: Threads = None,
        no_plots: NoPlots = False,
        quiet: Quiet = False,
        overwrite: Overwrite = False,
        n_samples: NSamples = 1,
    ) -> None:
        _run(ctx, threads, quiet, data=data, protocol=protocol, out=out, encoder=encoder, manipulator=manipulator,
             decoder=decoder, encoder_kwargs=parse_options(encoder_option, "--encoder-option"),
             manipulator_kwargs=parse_options(manipulator_option, "--manipulator-option"),
             decoder_kwargs=parse_options(decoder_option, "--decoder-option"),
             context_key=context_key, condition_key=condition_key, control=control, target=target,
             contexts=parse_list(contexts), exclude_contexts=parse_list(exclude_contexts) or (), min_cells=min_cells,
             preprocess=None if preprocess.lower() == "none" else preprocess, seed=seed, baselines=not no_baselines,
             n_top=n_top, device=device, plots=not no_plots, overwrite=overwrite, n_samples=n_samples)

    return command


benchmark_app.command(
    "oos", help="Held-out context (scGen protocol): for each context, train on all cells but its perturbed ones, "
                "predict them from its control cells. The method sees the context column.")(_split_command("oos"))
benchmark_app.command(
    "ood", help="The OOS split, but the method never sees the context column (CellGen protocol); "
                "the baselines still use it.")(_split_command("ood"))


@benchmark_app.command("pert", help="Papalexi PERT task: train on all replicates but --holdout, predict each targeted "
                                    "gene with >= --min-cells cells in --holdout from its control cells; one model.")
def pert(
    ctx: typer.Context,
    data: Data,
    out: Out,
    encoder: EncoderName = "pca",
    manipulator: ManipulatorName = "latent-arithmetic",
    decoder: DecoderName = None,
    encoder_option: EncoderOptions = None,
    manipulator_option: ManipulatorOptions = None,
    decoder_option: DecoderOptions = None,
    condition_key: ConditionKey = "condition",
    control: Control = "control",
    replicate_key: Annotated[str, typer.Option("--replicate-key", help="obs column of replicates.")] = "bio_rep",
    holdout: Annotated[str, typer.Option("--holdout", help="The replicate held out for testing.")] = "rep_3",
    train_replicates: Annotated[Optional[str], typer.Option(
        "--train-replicates", help="Comma-separated training replicates (default: all but --holdout).")] = None,
    drop_conditions: DropConditions = "ambiguous",
    targets: Annotated[Optional[str], typer.Option("--targets", help="Comma-separated targets to evaluate.")] = None,
    min_cells: Annotated[int, typer.Option("--min-cells", help="Fewest cells of a target in --holdout.")] = 100,
    preprocess: CountsPreprocess = "log1p",
    seed: Seed = 0,
    no_baselines: NoBaselines = False,
    n_top: NTop = 100,
    device: Device = "cpu",
    threads: Threads = None,
    no_plots: NoPlots = False,
    quiet: Quiet = False,
    overwrite: Overwrite = False,
    n_samples: NSamples = 1,
) -> None:
    _run(ctx, threads, quiet, data=data, protocol="pert", out=out, encoder=encoder, manipulator=manipulator,
         decoder=decoder, encoder_kwargs=parse_options(encoder_option, "--encoder-option"),
         manipulator_kwargs=parse_options(manipulator_option, "--manipulator-option"),
         decoder_kwargs=parse_options(decoder_option, "--decoder-option"),
         condition_key=condition_key, control=control, replicate_key=replicate_key, holdout=holdout,
         train_replicates=parse_list(train_replicates), drop_conditions=parse_list(drop_conditions) or (),
         contexts=parse_list(targets), min_cells=min_cells,
         preprocess=None if preprocess.lower() == "none" else preprocess, seed=seed, baselines=not no_baselines,
         n_top=n_top, device=device, plots=not no_plots, overwrite=overwrite, n_samples=n_samples)
