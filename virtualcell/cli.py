"""The ``virtualcell`` command line: demo, fit, predict, info (and benchmark)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    name="virtualcell",
    help="Composable AI virtual cells: fit encoder + manipulator + decoder pipelines on AnnData and "
         "predict how cells respond to conditions they were never measured in.\n\n"
         "Start with `virtualcell demo`, then `virtualcell info` to see the registered components.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

try:  # the benchmark commands live with the evaluation harness
    from .evaluate.commands import benchmark_app

    app.add_typer(benchmark_app, name="benchmark",
                  help="Run the EVALUATION.md protocols (oos, ood, pert) with baselines beside the method.")
except ImportError:  # pragma: no cover - only while the harness is absent
    pass


def parse_options(options: list[str] | None, what: str) -> dict:
    """``["n_latent=50", "likelihood=\\"nb\\""]`` -> ``{"n_latent": 50, "likelihood": "nb"}`` (JSON values, else strings)."""
    out = {}
    for option in options or []:
        key, sep, value = option.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{what} option {option!r} must look like key=value (e.g. n_latent=50).")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _fail(error: Exception) -> None:
    typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _read_h5ad(path: Path):
    import anndata as ad

    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist.")
    return ad.read_h5ad(path)


@app.command()
def info() -> None:
    """Show the version, the compute devices torch sees, and every registered component."""
    import platform

    import torch
    from rich.console import Console
    from rich.table import Table

    import virtualcell
    from .registry import registry

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
    from .demo import run_demo

    try:
        run_demo(out=out, encoder=encoder, manipulator=manipulator, held_out=held_out,
                 n_cell_types=n_cell_types, n_genes=n_genes, seed=seed)
    except (ValueError, KeyError, TypeError) as error:
        _fail(error)


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
    from .pipelines import PerturbationPipeline

    try:
        adata = _read_h5ad(data)
        for rule in exclude or []:
            adata = adata[~_match(adata.obs, rule)].copy()
        enc = {"name": encoder, **parse_options(encoder_option, "encoder")}
        man = {"name": manipulator, **parse_options(manipulator_option, "manipulator")}
        pipeline = PerturbationPipeline(enc, man, decoder, preprocess=preprocess, device=device)
        pipeline.fit(adata, condition_key=condition_key, control=control, context_key=context_key,
                     covariate_keys=covariate or (), layer=layer, seed=seed)
        pipeline.save(out, overwrite=overwrite)
    except (ValueError, KeyError, TypeError, FileNotFoundError, FileExistsError, RuntimeError) as error:
        _fail(error)
    typer.echo(f"saved the fitted pipeline to {out} ({adata.n_obs} cells, conditions {pipeline.metadata['conditions']})")


def _match(obs, rule: str):
    """Boolean mask [n_obs] of the rows of ``obs`` matching every ``key=value`` of ``rule`` (joined by '&')."""
    import numpy as np

    mask = np.ones(len(obs), dtype=bool)
    for part in rule.split("&"):
        key, sep, value = part.partition("=")
        if not sep:
            raise typer.BadParameter(f"{rule!r}: each part must be key=value.")
        if key not in obs:
            raise KeyError(f"obs column {key!r} not found; available: {list(obs.columns)}")
        mask &= (obs[key].astype(str) == value).to_numpy()
    return mask


@app.command()
def predict(
    pipeline: Path = typer.Option(..., help="A folder written by `virtualcell fit` (or Pipeline.save)."),
    data: Path = typer.Option(..., help=".h5ad with the cells to move."),
    target: str = typer.Option(..., help="Condition to predict them under."),
    out: Path = typer.Option(..., help="Output .h5ad of predicted cells."),
    cells: Optional[str] = typer.Option(None, help="Only cells matching 'key=value[&key=value]', e.g. 'cell_type=CD4T&condition=control'."),
    source: Optional[str] = typer.Option(None, help="Their current condition when the data has no condition column."),
    n_samples: int = typer.Option(1, min=1, help="Samples per cell (stochastic manipulators): adds variance and q05/q95 layers."),
    context_effect_scale: float = typer.Option(1.0, min=0.0, help="With n-samples > 1: scale of the random effect of a context whose response was not seen in fit (0: the model's spread alone)."),
    device: str = typer.Option("cpu", help="cpu, cuda, mps or auto."),
    seed: int = typer.Option(0, help="Seed."),
) -> None:
    """Predict cells under a target condition with a saved pipeline; writes an .h5ad."""
    from .evaluate.report import write_h5ad
    from .pipelines import PerturbationPipeline

    try:
        model = PerturbationPipeline.load(pipeline, device=device)
        adata = _read_h5ad(data)
        if cells:
            adata = adata[_match(adata.obs, cells)].copy()
        predicted = model.predict(adata, target=target, source=source, n_samples=n_samples, seed=seed,
                                  context_effect_scale=context_effect_scale)
        write_h5ad(predicted, out)
    except (ValueError, KeyError, TypeError, FileNotFoundError, RuntimeError) as error:
        _fail(error)
    typer.echo(f"wrote {predicted.n_obs} predicted cells x {predicted.n_vars} genes under {target!r} to {out}")


@app.command()
def embed(
    data: Path = typer.Option(..., help=".h5ad with the cells to encode."),
    encoder: Path = typer.Option(..., help="A saved encoder folder, or a saved pipeline folder (its preprocessing is reused)."),
    store: Path = typer.Option(..., help="Embedding store (zarr v3 folder); created when missing."),
    key: str = typer.Option("X_virtualcell", help="Name of the embedding in the store."),
    preprocess: str = typer.Option("none", help="Preprocessing for a bare encoder: 'none', 'log1p' or 'kang-full'."),
    overwrite: bool = typer.Option(False, help="Replace an existing key."),
    device: str = typer.Option("cpu", help="cpu, cuda, mps or auto."),
) -> None:
    """Encode cells into a universal representation and store it (zarr) with its provenance."""
    from .pipelines import PerturbationPipeline
    from .pipelines.embed import embed as embed_cells

    try:
        adata = _read_h5ad(data)
        model = PerturbationPipeline.load(encoder, device=device) if (encoder / "pipeline.json").exists() else encoder
        embed_cells(adata, model, preprocess=preprocess, key_added=key, store=store, overwrite=overwrite, device=device)
    except (ValueError, KeyError, TypeError, FileNotFoundError) as error:
        _fail(error)
    typer.echo(f"stored {adata.n_obs} cells x {adata.obsm[key].shape[1]} dimensions as {key!r} in {store}")


@app.command()
def query(
    store: Path = typer.Option(..., help="Embedding store written by `virtualcell embed`."),
    key: str = typer.Option(..., help="Embedding to search."),
    cells: str = typer.Option(..., help="Query cells by obs: 'key=value[&key=value]', or 'index=<obs name>'."),
    k: int = typer.Option(10, min=1, help="Neighbours per query cell."),
    show: Optional[list[str]] = typer.Option(None, help="obs columns to summarise among the neighbours (default: all categoricals)."),
) -> None:
    """Find the stored cell states nearest to some cells, and summarise who they are."""
    import pandas as pd

    from .representations.store import EmbeddingStore

    try:
        embedding = EmbeddingStore(store, mode="r").read(key)
        obs = embedding.obs
        if cells.startswith("index="):
            mask = obs.index == cells[len("index="):]
        else:
            mask = _match(obs, cells)
        if not mask.any():
            raise ValueError(f"No stored cell matches {cells!r}.")
        indices, distances = EmbeddingStore(store, mode="r").nearest(key, embedding.values[mask], k=k + 1)
    except (ValueError, KeyError) as error:
        _fail(error)
    neighbours = obs.iloc[indices[:, 1:].ravel()]
    columns = show or [c for c in obs.columns if isinstance(obs[c].dtype, pd.CategoricalDtype)]
    typer.echo(f"{int(mask.sum())} query cells, {k} neighbours each (mean distance {distances[:, 1:].mean():.3f})")
    for column in columns:
        shares = neighbours[column].astype(str).value_counts(normalize=True).head(10)
        typer.echo(f"{column}: " + ", ".join(f"{name} {share:.0%}" for name, share in shares.items()))


@app.command()
def publish(
    path: Path = typer.Argument(..., help="A saved component or pipeline folder."),
    hub: str = typer.Option(..., help="Any fsspec URL: a folder, s3://bucket/hub, ..."),
    name: str = typer.Option(..., help="Name to publish under (lower-case)."),
    version: str = typer.Option(..., help="Version (immutable once published), e.g. 1.0.0."),
) -> None:
    """Publish a shared instrument (component or pipeline) to a hub; versions are immutable."""
    from .registry.publish import publish as publish_folder

    try:
        digest = publish_folder(path, hub, name, version)
    except (ValueError, FileExistsError, FileNotFoundError) as error:
        _fail(error)
    typer.echo(f"published {name} {version} to {hub} (content sha256 {digest})")


@app.command()
def pull(
    name: str = typer.Argument(..., help="Published name."),
    hub: str = typer.Option(..., help="The hub URL it was published to."),
    version: str = typer.Option("latest", help="Version, or 'latest'."),
    cache_dir: Optional[Path] = typer.Option(None, help="Where to keep pulled instruments (default ~/.cache/virtualcell)."),
) -> None:
    """Pull a shared instrument into the local cache (every file verified) and print its folder."""
    from .registry.publish import pull as pull_folder

    try:
        folder = pull_folder(hub, name, version, cache_dir=cache_dir)
    except (ValueError, FileNotFoundError) as error:
        _fail(error)
    typer.echo(str(folder))


def main() -> None:  # console-script entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
