"""Spatial commands: domains."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app
from .common import check_output_file, check_output_folder, read_h5ad, refuse_overwriting_input
from .options import GRAMMAR, parse_options


@app.command()
def domains(
    data: Path = typer.Option(..., help=".h5ad with cell coordinates in obsm (and expression in X or --layer)."),
    out: Path = typer.Option(..., help="Where to write the .h5ad with obs['domain'] and the representation."),
    n_domains: int = typer.Option(..., min=2, help="Number of domains K."),
    spatial_key: str = typer.Option("spatial", help="obsm key of the coordinates."),
    section_key: Optional[str] = typer.Option(None, help="obs column of the section (slide, z-plane) of each cell."),
    method: str = typer.Option("graph", help="graph (GNN encoder), pca or neighbour-average (baselines)."),
    n_neighbors: int = typer.Option(10, min=1, help="Spatial neighbours per cell."),
    radius: Optional[float] = typer.Option(None, help="Neighbours within this distance instead of k nearest."),
    deduplicate: bool = typer.Option(False, help="Cells at duplicated coordinates (osmFISH has 527) are refused unless "
                                                 "given: then the graph is built over the distinct positions, with a warning."),
    layer: Optional[str] = typer.Option(None, help="Layer holding expression (default X)."),
    preprocess: str = typer.Option("auto", help="auto, log1p or none (auto: normalize+log1p only for counts)."),
    encoder: Optional[list[str]] = typer.Option(None, "--encoder-option", "--encoder",
                                                help=f"Graph encoder option {GRAMMAR}, e.g. objective=dgi "
                                                     "(--encoder is the old spelling)."),
    pretrained: Optional[Path] = typer.Option(None, help="Apply this saved graph encoder (folder) instead of training one."),
    save_encoder: Optional[Path] = typer.Option(None, help="Save the trained graph encoder to this folder."),
    key_added: str = typer.Option("domain", help="obs column for the domains (provenance in uns)."),
    plot: Optional[Path] = typer.Option(None, help="Also draw the domains on the coordinates (PNG/PDF/SVG)."),
    seed: int = typer.Option(0, help="Seed of training and clustering."),
    overwrite: bool = typer.Option(False, help="Replace an existing --out, --plot or --save-encoder."),
) -> None:
    """Find spatial domains (layers, regions) from coordinates and expression; write obs['domain']."""
    from ..pipelines.domain_plot import plot_spatial_domains
    from ..pipelines.domains import REPRESENTATION_KEYS, spatial_domains

    refuse_overwriting_input(out, data)
    check_output_file(out, overwrite=overwrite)
    if plot is not None:
        refuse_overwriting_input(plot, data)
        check_output_file(plot, overwrite=overwrite, option="--plot")
    if save_encoder is not None:
        refuse_overwriting_input(save_encoder, data)
        check_output_folder(save_encoder, overwrite=overwrite, option="--save-encoder", replaces="config.json")
    outputs = [p.absolute() for p in (out, plot, save_encoder) if p is not None]
    if len(set(outputs)) < len(outputs):
        raise ValueError("--out, --plot and --save-encoder must be different paths.")
    if out.suffix != ".h5ad":
        raise ValueError(f"--out {out} should end in .h5ad.")
    if pretrained is not None and encoder:
        raise ValueError("--pretrained applies a saved encoder as it is; drop --encoder-option.")
    if (pretrained or save_encoder) and method != "graph":
        raise ValueError("--pretrained and --save-encoder need --method graph.")
    adata = read_h5ad(data)
    _, model = spatial_domains(adata, spatial_key=spatial_key, section_key=section_key, n_domains=n_domains,
                               method=method, n_neighbors=n_neighbors, radius=radius, layer=layer,
                               preprocess=preprocess, encoder=pretrained or parse_options(encoder, "--encoder-option") or None,
                               key_added=key_added, seed=seed, return_encoder=True, deduplicate=deduplicate)
    if save_encoder is not None:
        model.save(save_encoder, overwrite=overwrite)
    from ..evaluate.report import write_h5ad

    write_h5ad(adata, out)
    if plot is not None:
        plot_spatial_domains(adata, key=key_added, spatial_key=spatial_key, section_key=section_key, path=plot,
                             title=f"{method} domains of {data.name}")
    sizes = adata.obs[key_added].value_counts().sort_index()
    typer.echo(f"{adata.n_obs} cells in {n_domains} domains ({method}; obsm[{REPRESENTATION_KEYS[method]!r}]): "
               + ", ".join(f"{name}: {count}" for name, count in sizes.items()) + f" -> {out}"
               + (f", plot {plot}" if plot is not None else ""))
