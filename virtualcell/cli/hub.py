"""Hub commands: publish, pull."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app
from .common import fail

@app.command()
def publish(
    path: Path = typer.Argument(..., help="A saved component or pipeline folder."),
    hub: str = typer.Option(..., help="Any fsspec URL: a folder, s3://bucket/hub, ..."),
    name: str = typer.Option(..., help="Name to publish under (lower-case)."),
    version: str = typer.Option(..., help="Version (immutable once published), e.g. 1.0.0."),
) -> None:
    """Publish a shared instrument (component or pipeline) to a hub; versions are immutable."""
    from ..registry.publish import publish as publish_folder

    try:
        digest = publish_folder(path, hub, name, version)
    except (ValueError, FileExistsError, FileNotFoundError) as error:
        fail(error)
    typer.echo(f"published {name} {version} to {hub} (content sha256 {digest})")


@app.command()
def pull(
    name: str = typer.Argument(..., help="Published name."),
    hub: str = typer.Option(..., help="The hub URL it was published to."),
    version: str = typer.Option("latest", help="Version, or 'latest'."),
    cache_dir: Optional[Path] = typer.Option(None, help="Where to keep pulled instruments (default ~/.cache/virtualcell)."),
) -> None:
    """Pull a shared instrument into the local cache (every file verified) and print its folder."""
    from ..registry.publish import pull as pull_folder

    try:
        folder = pull_folder(hub, name, version, cache_dir=cache_dir)
    except (ValueError, FileNotFoundError) as error:
        fail(error)
    typer.echo(str(folder))
