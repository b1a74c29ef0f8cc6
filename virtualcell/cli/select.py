"""``virtualcell select``: choose a pipeline on your own data by inner cross-validation, fit it, save it.

    virtualcell select --data kang.h5ad --condition-key condition --context-key cell_type \\
        --candidates "mean-shift,pca+latent-arithmetic,vae(max_epochs=20)+latent-arithmetic" --out chosen/

Errors are left to the CLI's error boundary (``.errors``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app
from .common import check_output_folder, read_h5ad, refuse_overwriting_input
from .params import SeedOption

__all__ = ["select", "selection_table"]


def selection_table(report: dict, title: str):
    """A rich Table of the ranked inner-CV results (loss ± its standard error against the best; metrics mean ± sd
    over the inner units); the budget is in the title (a quick budget is flagged)."""
    from rich.table import Table

    metrics = list(report["metrics"])
    budget = report.get("budget", "full")
    flag = "" if budget == "full" else " — QUICK inner CV: the ranking may not transfer to the final fit"
    table = Table(title=f"{title}; budget {budget}{flag}")
    for column in ["#", "candidate", "loss ± se", "mean rank", "unit wins"] + metrics + ["fit s", "weight"]:
        table.add_column(column, overflow="fold")

    def fmt(mean, sd=None) -> str:
        if mean is None or mean != mean:
            return "-"
        return f"{mean:.3f}" if sd is None or sd != sd else f"{mean:.3f} ± {sd:.3f}"

    for i, row in enumerate(report["table"], 1):
        style = "bold green" if row["entry"] == report["winner"] else None
        table.add_row(str(i), row["entry"], fmt(row.get("score"), row.get("score_se")), fmt(row["mean_rank"]),
                      str(row["unit_wins"]),
                      *[fmt(row[f"{m}_mean"], row[f"{m}_sd"]) for m in metrics],
                      fmt(row["seconds_fit"]), fmt(row["weight"]), style=style)
    return table


@app.command()
def select(
    data: Path = typer.Option(..., "--data", help="The .h5ad with every cell to choose and fit on."),
    out: Path = typer.Option(..., "--out", help="Folder for the fitted winner (a pipeline folder)."),
    condition_key: str = typer.Option("condition", "--condition-key", help="obs column of conditions."),
    control: str = typer.Option("control", "--control", help="Label of unperturbed cells."),
    context_key: Optional[str] = typer.Option(
        None, "--context-key", help="obs column of contexts: leave-one-context-out folds (>= 3 contexts)."),
    replicate_key: Optional[str] = typer.Option(
        None, "--replicate-key", help="obs column of replicates: leave-one-replicate-out folds instead (PERT)."),
    candidates: Optional[list[str]] = typer.Option(
        None, "--candidates", help="Candidate specs, comma-separated or repeated: mean-shift, pca+latent-arithmetic, "
                                   "vae(max_epochs=20)+latent-arithmetic, ... (default: a small CPU-friendly set)."),
    preprocess: str = typer.Option("none", "--preprocess", help="none (X is log-normalised), log1p or kang-full."),
    no_ensemble: bool = typer.Option(False, "--no-ensemble", help="Do not consider the stacked ensemble."),
    no_spread: bool = typer.Option(False, "--no-spread",
                                   help="Do not consider spread-calibrated entries (<entry>+spread)."),
    min_cells: int = typer.Option(10, "--min-cells", help="Fewest control / perturbed cells of an inner unit."),
    max_cells: Optional[int] = typer.Option(
        None, "--max-cells", help="Quick: subsample each (fold, condition) group to this many cells for the inner CV."),
    max_epochs: Optional[int] = typer.Option(
        None, "--max-epochs", min=1, help="Quick: cap the inner fits' epochs (the final fit keeps its own)."),
    quick: bool = typer.Option(False, "--quick", help="Quick inner CV (200 cells per group, <= 15 epochs): faster, "
                                                       "but its ranking may not transfer to the final fit."),
    rule: str = typer.Option("one-se", "--rule", help="one-se (default: the simplest entry within one standard "
                                                      "error of the best), min, or rank."),
    n_jobs: int = typer.Option(1, "--n-jobs", min=1, help="Worker processes for the inner fits (1 thread each)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads of this process."),
    from_disk: bool = typer.Option(False, "--from-disk", help="Never read --data whole (an .h5ad, a .zarr or a folder of "
                                   "shards): every inner and final fit trains from disk, only each inner unit's cells "
                                   "are read; a --preprocess recipe is applied once by a streamed copy (docs/scale.md)."),
    seed: SeedOption = 0,
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out folder."),
) -> None:
    """Rank candidate pipelines by inner cross-validation on --data's contexts (never on held-out data),
    print the table, and fit the winner (or the stacked ensemble, if it ranks first) on all the cells."""
    from rich.console import Console

    from ..execution import torch_threads
    from ..selection import parse_candidates, select_pipeline
    from ..selection.candidates import split_specs
    from ..selection.ranking import RULES

    refuse_overwriting_input(out, data)
    check_output_folder(out, overwrite=overwrite)
    if context_key is None and replicate_key is None:
        raise typer.BadParameter("pass --context-key (leave one context out, >= 3 contexts) or --replicate-key "
                                 "(leave one replicate out).", param_hint="--context-key")
    if rule not in RULES:
        raise typer.BadParameter(f"unknown rule {rule!r}; use one of {list(RULES)}.", param_hint="--rule")
    specs = [s for item in candidates for s in split_specs(item)] if candidates else None
    if specs is not None:
        parse_candidates(specs)      # unknown names fail here, before the data is read
    adata = str(data) if from_disk else read_h5ad(data)
    with torch_threads(threads):
        selection = select_pipeline(adata, candidates=specs, condition_key=condition_key, control=control,
                                    context_key=context_key, replicate_key=replicate_key,
                                    preprocess=None if preprocess.lower() == "none" else preprocess,
                                    ensemble=not no_ensemble, spread=not no_spread, min_cells=min_cells,
                                    max_cells=max_cells, max_epochs=max_epochs, quick=quick, rule=rule,
                                    n_jobs=n_jobs, seed=seed, progress=not quiet)
    report = selection.report
    console = Console(width=None if Console().is_terminal else 160)
    console.print(selection_table(report, f"{report['protocol']} over {report['fold_key']!r}: "
                                          f"{sum(len(f['units']) for f in report['folds'])} inner units"))
    console.print(f"score: {report['selection_score']}; rule: {report['rule']}; "
                  f"winner: [bold]{report['winner']}[/bold]")
    seconds = report["seconds"]
    console.print(f"time: {seconds['total']:.1f} s in all, {seconds['final_fit']:.1f} s for the final fit "
                  f"(select = {seconds['work_multiplier']:.1f} x one fit)")
    selection.pipeline.save(out, overwrite=overwrite)
    console.print(f"saved -> {out} (selection table in pipeline.json's metadata['selection'])")
