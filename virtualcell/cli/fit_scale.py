"""``virtualcell fit --from-disk`` and ``--nproc N``: fit from the file on disk, data-parallel over N processes.

``--from-disk`` hands the data path to ``PerturbationPipeline.fit`` (the matrix is never read whole;
docs/scale.md). ``--nproc N`` re-runs the same command, without ``--nproc`` and with ``--from-disk``, in
N processes launched by torch's own launcher (``python -m torch.distributed.run --standalone``); each
joins the process group (gloo on CPU, NCCL on CUDA: ``virtualcell.train.distributed``) and only rank 0
saves the pipeline folder; only rank 0 prints notes, warnings and progress (the others print their
``error:`` line only). ``--checkpoint DIR`` writes resumable checkpoints there (each epoch and every
``--checkpoint-every`` steps within one) and resumes from the last one, on any number of processes.
``--data`` may be a folder of ``.h5ad`` / ``.zarr`` shards (one dataset, shards in name order).
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import typer

__all__ = ["check_disk_fit", "in_worker", "launch_processes", "worker_device", "read_disk_source",
           "leave_unless_main", "checkpoint_options", "CheckpointOption", "CheckpointEveryOption", "ErrorsOnly",
           "quiet_process"]

#: set in the environment of the processes ``--nproc`` launches
WORKER_ENV = "VIRTUALCELL_FIT_WORKER"
_PROBE_ROWS = 2000
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

CheckpointOption = typer.Option(
    None, "--checkpoint", help="Folder for resumable training checkpoints (with --from-disk / --nproc; vae): written "
    "each epoch and every --checkpoint-every steps within one. Rerun the same command (any --nproc) to resume from "
    "the last one; refused if the data changed since.")
CheckpointEveryOption = typer.Option(200, "--checkpoint-every", min=1,
                                     help="Training steps between mid-epoch checkpoints (with --checkpoint).")


def in_worker() -> bool:
    """True inside one of the processes that ``--nproc`` launched."""
    return os.environ.get(WORKER_ENV) == "1"


def check_disk_fit(specs: dict, data: Path, *, nproc: int | None, exclude: list[str], device: str) -> None:
    """Refuse what cannot be fitted from disk before anything is read or launched."""
    from ..pipelines import PerturbationPipeline

    if in_worker() and os.environ.get("RANK", "0") != "0":
        quiet_process()      # one voice: rank 0 prints notes, warnings and progress; the others their errors

    if nproc is not None and nproc < 1:
        raise ValueError(f"--nproc {nproc}: the number of processes must be >= 1 (e.g. --nproc 2).")
    if not Path(data).exists():
        raise FileNotFoundError(f"--data {data} does not exist; check the path.")
    if nproc and device.startswith("cuda") and not in_worker():
        import torch

        if nproc > torch.cuda.device_count():
            raise ValueError(f"--nproc {nproc} on --device cuda needs {nproc} GPUs, this machine has "
                             f"{torch.cuda.device_count()}; lower --nproc or use --device cpu.")
    pipe = PerturbationPipeline(specs["--encoder-option"], specs["--manipulator-option"], specs.get("--decoder-option"))
    from ..pipelines.fit_from_disk_components import disk_refusal

    refusal = disk_refusal(pipe)
    if refusal and refusal[0] == "encoder":
        raise ValueError(f"--from-disk / --nproc train the encoders 'vae', 'pca' and 'transformer' only; "
                         f"{specs['--encoder-option']['name']!r} trains in memory. Use --encoder vae, pca or transformer, "
                         "or drop --from-disk / --nproc to read the data into memory.")
    if refusal:
        raise ValueError(f"--from-disk / --nproc cannot train the decoder {specs['--decoder-option']['name']!r} "
                         "(it trains in memory only); use --decoder mlp-decoder, drop --decoder (the encoder's own "
                         "decoder), or drop --from-disk.")


#: encoders whose training ``--checkpoint`` resumes (trained in epochs from the loader, with ``checkpoint_dir``)
CHECKPOINTED = ("vae", "transformer")


def checkpoint_options(specs: dict, checkpoint: Path | None, every: int, *, from_disk: bool) -> dict[str, Any]:
    """The ``fit`` arguments for ``--checkpoint`` (``{}`` without it): the encoder's ``checkpoint_dir`` and the
    loader's mid-epoch checkpoints; says where a run resumes (once, in the launching process)."""
    if checkpoint is None:
        return {}
    if not from_disk:
        raise ValueError("--checkpoint resumes a fit from disk: add --from-disk (or --nproc N).")
    if specs["--encoder-option"]["name"] not in CHECKPOINTED:
        name = specs["--encoder-option"]["name"]
        raise ValueError(f"--checkpoint resumes the training of the encoders {list(CHECKPOINTED)}; {name!r} is not "
                         "trained in epochs. Use --encoder vae (or transformer), or drop --checkpoint.")
    if checkpoint.exists() and not checkpoint.is_dir():
        raise NotADirectoryError(f"--checkpoint {checkpoint} is a file; pass a folder (it is created if missing).")
    specs["--encoder-option"]["checkpoint_dir"] = str(checkpoint)
    saved = checkpoint / "checkpoint.json"
    if saved.exists() and not in_worker():
        loop = json.loads(saved.read_text(encoding="utf-8"))["loop"]
        where = (f"epoch {loop['in_epoch']['epoch'] + 1}, {loop['in_epoch']['cells']} cells into it"
                 if loop.get("in_epoch") else f"the end of epoch {loop['epoch'] + 1}")
        typer.secho(f"resuming from the checkpoint in {checkpoint} ({where})", err=True)
    return {"disk": {"exact": False, "checkpoint_every_steps": every}}


def _without_nproc(args: list[str]) -> list[str]:
    """The command line ``args`` without ``--nproc N`` / ``--nproc=N``, with ``--from-disk``."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            kept.append(arg)
    return kept if "--from-disk" in kept else [*kept, "--from-disk"]


def launch_processes(nproc: int, out: Path, checkpoint: Path | None = None) -> None:
    """Run this ``fit`` command in ``nproc`` processes with torchrun; a failing process is an error (the
    launcher stops the others), and the last checkpoint in ``checkpoint`` is kept for the rerun."""
    args = _without_nproc(sys.argv[1:])
    if "fit" not in args:
        raise RuntimeError("--nproc re-runs the `virtualcell fit` command line it was given; call it as "
                           "`virtualcell fit ... --nproc N` (or `python -m virtualcell.cli fit ...`).")
    import uuid

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # what `python -m torch.distributed.run --standalone --nproc-per-node N` sets up, run here so that a failing
    # process is reported in the CLI's terms (its own `error:` line, then ours) instead of the launcher's traceback
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0)
    saved = {key: os.environ.get(key) for key in (WORKER_ENV, "OMP_NUM_THREADS")}
    os.environ[WORKER_ENV] = "1"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    typer.secho(f"fitting from disk in {nproc} processes (torch.distributed)", err=True)
    try:
        elastic_launch(config, sys.executable)("-m", "virtualcell.cli", *args)
    except ChildFailedError as error:
        rank, failure = error.get_first_failure()
        kept = ""
        if checkpoint is not None and (Path(checkpoint) / "checkpoint.json").exists():
            kept = (f" The last checkpoint in {checkpoint} is kept: rerun the same command (with any --nproc, or "
                    "--from-disk alone for one process) to resume from it.")
        why = (f"was killed by signal {-failure.exitcode}" if failure.exitcode < 0 else
               f"exited with code {failure.exitcode} (its `error:` line above says why)")
        raise RuntimeError(f"the {nproc}-process fit failed: process {rank} {why}; the others were stopped. "
                           f"Nothing was saved to {out}.{kept}") from None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def worker_device(device: str) -> str:
    """Join the process group of ``--nproc`` (no-op in one process); the device this process trains on."""
    if not in_worker():
        return device
    from ..train.distributed import init_from_env

    context = init_from_env("cuda" if device.startswith("cuda") else "cpu")
    if context.rank != 0:
        quiet_process()
    return str(context.device)


def quiet_process() -> None:
    """This process prints no progress, notes or warnings on stderr, only its error (idempotent)."""
    os.environ["VIRTUALCELL_PROGRESS"] = "0"
    if not isinstance(sys.stderr, ErrorsOnly):
        sys.stderr = ErrorsOnly(sys.stderr)


class ErrorsOnly(io.TextIOBase):
    """A stderr that drops what a process writes until its ``error:`` line (or a traceback), then passes all."""

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self.stream, self.passing = stream, False

    def write(self, text: str) -> int:
        if not self.passing and _ANSI.sub("", text).lstrip().startswith(("error:", "Traceback")):
            self.passing = True
        if self.passing:
            self.stream.write(text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def leave_unless_main() -> None:
    """After the fit: leave the process group; every process but rank 0 stops here (rank 0 saves)."""
    if not in_worker():
        return
    from ..train.distributed import is_main, shutdown

    main = is_main()
    shutdown()
    if not main:
        raise typer.Exit(0)


def read_disk_source(data: Path, layer: str | None) -> tuple[Any, Any]:
    """``(the cells of the file on disk, a small AnnData of its first rows)``: the annotations without the matrix
    (a ``DiskCells``), and the rows that ``--preprocess auto`` inspects (the matrix under ``layer`` too when one
    is named)."""
    import anndata as ad
    import numpy as np

    from ..train.disk_cells import DiskCells

    cells = DiskCells.open(str(data), layer=layer)
    raw = cells.read(np.arange(min(cells.n_obs, _PROBE_ROWS)))
    probe = ad.AnnData(X=raw)
    if layer:
        probe.layers[layer] = raw
    return cells, probe
