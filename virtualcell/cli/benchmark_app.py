"""The ``virtualcell benchmark`` command group: its Typer app, the options its commands share, and parsers.

Commands add themselves to :data:`benchmark_app` (:mod:`.benchmark`: oos, ood, pert; :mod:`.pert_unseen`;
:mod:`.represent`); the main CLI mounts it with ``app.add_typer(benchmark_app, name="benchmark")``.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Optional

import click
import typer

__all__ = ["benchmark_app", "parse_list", "parse_names", "command_line"]

benchmark_app = typer.Typer(help="Benchmark a method against the baselines and the noise ceiling (docs/evaluation.md).",
                            no_args_is_help=True, add_completion=False)

# -- shared options --------------------------------------------------------------------------------
Data = Annotated[Path, typer.Option("--data", help="The .h5ad dataset (with --from-disk also a .zarr store or a folder "
                                                    "of .h5ad/.zarr shards).", exists=True, readable=True)]
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
Conformal = Annotated[bool, typer.Option(
    "--conformal", help="Also calibrate split-conformal intervals of each method's predicted mean on inner folds of "
    "the training cells (K extra fits) and report conformal_coverage80/90/95 (docs/uncertainty.md).")]
FromDisk = Annotated[bool, typer.Option(
    "--from-disk", help="Never read --data whole: fit each method from disk on its training cells, read only each "
    "unit's cells; a --preprocess recipe is applied once by a streamed copy (docs/scale.md).")]
NSamples = Annotated[int, typer.Option(
    "--n-samples", help="With N >= 2, also predict N populations per unit and report coverage90 and interval width.")]


def parse_list(text: str | None) -> list[str] | None:
    """``"CD4T,B"`` -> ``["CD4T", "B"]``; None or empty -> None."""
    if not text:
        return None
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_names(text: str | None, option: str) -> list[str] | None:
    """Like :func:`parse_list`, but an option given with no name in it (``--targets ''``) is an error
    rather than "all": None only when the option was left out."""
    names = parse_list(text)
    if text is not None and not names:
        raise typer.BadParameter(f"{text!r} names nothing; give comma-separated names (e.g. {option} A,B), or leave "
                                 f"{option} out to use every one.", param_hint=option)
    return names


#: options recorded in the command line even at their defaults
_ALWAYS = {"encoder", "manipulator", "seed", "preprocess"}


def command_line(ctx: click.Context) -> str:
    """The invocation, rebuilt from the parsed options (those that differ from the default, and a few always)."""
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
