"""Hub commands: publish, pull.

``--hub`` is any fsspec URL: a folder, ``s3://bucket/prefix`` (needs ``pip install 'virtualcell[s3]'``).
An S3-compatible server other than AWS (MinIO, Ceph, moto) is named by the environment:
``AWS_ENDPOINT_URL=http://host:9000`` with ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import typer

from .app import app
from .common import fail
from .errors import show_warnings

_HUB_HELP = ("Any fsspec URL: a folder, s3://bucket/hub, ... (S3-compatible servers: set AWS_ENDPOINT_URL, "
             "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY).")


@app.command()
def publish(
    path: Path = typer.Argument(..., help="A saved component or pipeline folder."),
    hub: str = typer.Option(..., help=_HUB_HELP),
    name: str = typer.Option(..., help="Name to publish under (lower-case)."),
    version: str = typer.Option(..., help="Version (immutable once published), e.g. 1.0.0."),
) -> None:
    """Publish a shared instrument (component or pipeline) to a hub; versions are immutable, all or nothing."""
    from ..registry.publish import publish as publish_folder

    try:
        digest = publish_folder(path, hub, name, version)
    except (ValueError, OSError, ImportError) as error:  # FileExistsError, PublishConflictError, artifact errors
        fail(error)
    typer.echo(f"published {name} {version} to {hub} (content sha256 {digest})")


@app.command()
def pull(
    name: str = typer.Argument(..., help="Published name."),
    hub: str = typer.Option(..., help=_HUB_HELP),
    version: str = typer.Option("latest", help="Version, or 'latest'."),
    cache_dir: Optional[Path] = typer.Option(None, help="Where to keep pulled instruments (default ~/.cache/virtualcell)."),
) -> None:
    """Pull a shared instrument into the local cache (every file verified, a cached copy too) and print its folder."""
    from ..registry.publish import pull as pull_folder

    try:
        with warnings.catch_warnings(record=True) as caught:   # an altered cached copy: said, then fetched again
            warnings.simplefilter("always")
            folder = pull_folder(hub, name, version, cache_dir=cache_dir)
    except (ValueError, OSError, ImportError) as error:  # FileNotFoundError, TamperedArtifactError, unsafe names
        fail(error)
    show_warnings(caught)
    typer.echo(str(folder))


@app.command()
def published(hub: str = typer.Option(..., help=_HUB_HELP)) -> None:
    """List the instruments at a hub and the versions `pull` accepts; a version whose manifest `pull` refuses
    is listed apart (on stderr) with the reason."""
    from ..registry.pull import published_status

    try:
        found = published_status(hub)
    except (ValueError, OSError, ImportError) as error:
        fail(error)
    if not found:
        typer.echo(f"nothing is published at {hub}")
    for name, versions in found.items():
        good = [version for version, reason in versions.items() if reason is None]
        if good:
            typer.echo(f"{name}\t{' '.join(good)}")
        for version, reason in versions.items():
            if reason is not None:
                typer.secho(f"warning: {name} {version} is listed at {hub} but pull refuses it: {reason}",
                            fg=typer.colors.YELLOW, err=True)
