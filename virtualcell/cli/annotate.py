"""``virtualcell annotate``: transfer labels from a reference .h5ad to a query .h5ad."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app
from .common import check_output_file, read_h5ad, refuse_overwriting_input
from .options import GRAMMAR, check_options, parse_options, resolve_preprocess
from .params import DeviceOption, OverwriteFile, SeedOption


@app.command()
def annotate(
    query: Path = typer.Option(..., help=".h5ad of the cells to label."),
    reference: Path = typer.Option(..., help=".h5ad of labelled cells."),
    label_key: str = typer.Option(..., help="The reference's obs column of labels (e.g. cell_type)."),
    out: Path = typer.Option(..., help="Where to write the annotated query (.h5ad; never the input)."),
    encoder: str = typer.Option("pca", help="Registered encoder (fitted on the reference), a saved encoder folder, "
                                            "or a local BERT checkpoint folder (config.json + model.safetensors)."),
    encoder_option: Optional[list[str]] = typer.Option(None, help=f"Encoder option {GRAMMAR}."),
    decoder_option: Optional[list[str]] = typer.Option(None, help=f"label-decoder option {GRAMMAR}."),
    token_table: Optional[Path] = typer.Option(None, help="Gene-token table (JSON/TSV) of a BERT checkpoint."),
    preprocess: str = typer.Option("auto", help="auto (raw counts -> log1p, else none), none (X is log-normalised), "
                                                "log1p or kang-full."),
    key_added: Optional[str] = typer.Option(None, help="obs/obsm/uns key of the results (default <label-key>_predicted)."),
    seed: SeedOption = 0,
    device: DeviceOption = "cpu",
    overwrite: OverwriteFile = False,
) -> None:
    """Label the query's cells from the reference (encoder + calibrated label decoder), with per-cell confidence."""
    from ..pipelines.annotate import annotate as annotate_cells

    refuse_overwriting_input(out, query, reference)
    check_output_file(out, overwrite=overwrite)
    query_data, reference_data = read_h5ad(query), read_h5ad(reference)
    options = parse_options(encoder_option, "--encoder-option")
    encoder_spec = encoder if Path(encoder).is_dir() else {"name": encoder, **options}
    if options and Path(encoder).is_dir():
        raise ValueError("--encoder-option cannot change a saved or pretrained encoder; pass a registered name.")
    decoder_options = parse_options(decoder_option, "--decoder-option")
    if not Path(encoder).is_dir():
        check_options(encoder, options, "--encoder-option")
    check_options("label-decoder", decoder_options, "--decoder-option")
    key = key_added or f"{label_key}_predicted"
    annotate_cells(query_data, reference_data, label_key=label_key, encoder=encoder_spec,
                   decoder={"name": "label-decoder", **decoder_options},
                   preprocess=resolve_preprocess(preprocess, reference_data), key_added=key,
                   token_table=token_table, seed=seed, device=device)
    from ..evaluate.report import write_h5ad

    write_h5ad(query_data, out)
    counts = query_data.obs[key].value_counts()
    confidence = query_data.obs[f"{key}_confidence"]
    typer.echo(f"labelled {query_data.n_obs} cells -> {out} (obs[{key!r}], median confidence {confidence.median():.3f})")
    for label, n in counts.items():
        typer.echo(f"  {label}: {n}")
