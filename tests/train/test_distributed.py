"""Real data-parallel training: 2 gloo processes on CPU launched by torchrun, against 1 process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse as sp

WORKER = textwrap.dedent('''
    import json, os, sys
    import numpy as np, torch
    from virtualcell.representations.vae import VAEEncoder
    from virtualcell.train import distributed
    from virtualcell.train.disk_loader import DiskLoader, DiskRows

    path, out, checkpoint, global_batch, epochs, die_after = sys.argv[1:7]
    context = distributed.init_from_env("cpu")
    torch.set_num_threads(1)
    rows = DiskRows(path)
    rows.loader_options, rows.checkpoint_every_steps = {"block_size": 16, "pool_blocks": 4}, 2
    if int(die_after) >= 0 and context.rank == 1:   # this process is killed mid-epoch
        original, steps = DiskLoader.iterate, []
        def dying(self, *args, **kwargs):
            for batch in original(self, *args, **kwargs):
                steps.append(1)
                if len(steps) > int(die_after):
                    os._exit(3)
                yield batch
        DiskLoader.iterate = dying
    encoder = VAEEncoder(n_hidden=32, n_latent=4, max_epochs=int(epochs), batch_size=int(global_batch) // context.world,
                         validation_fraction=0.2, checkpoint_dir=checkpoint or None)
    encoder.fit(rows, [f"g{i}" for i in range(rows.shape[1])], seed=0, progress=False)
    if distributed.is_main():
        with open(out, "w") as handle:
            json.dump({"world": context.world, "epochs": encoder.history.epochs}, handle)
    distributed.shutdown()
''')


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    import anndata as ad

    folder = tmp_path_factory.mktemp("ddp")
    rng = np.random.default_rng(0)
    x = np.log1p(rng.poisson(rng.gamma(1.0, 1.0, size=(1, 30)), size=(1200, 30))).astype(np.float32)
    ad.AnnData(X=sp.csr_matrix(x)).write_h5ad(folder / "cells.h5ad")
    (folder / "worker.py").write_text(WORKER)
    return folder


def _launch(folder, nproc: int, name: str, *, epochs: int = 3, checkpoint: str = "", die_after: int = -1):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VIRTUALCELL_PROGRESS": "0"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               str(folder / "worker.py"), str(folder / "cells.h5ad"), str(folder / name), checkpoint, "64",
               str(epochs), str(die_after)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    result = json.loads((folder / name).read_text()) if (folder / name).exists() else None
    return done, result


def test_two_gloo_processes_reach_the_loss_of_one(store):
    done, one = _launch(store, 1, "one.json")
    assert done.returncode == 0, done.stderr[-3000:]
    done, two = _launch(store, 2, "two.json")
    assert done.returncode == 0, done.stderr[-3000:]
    assert two["world"] == 2 and one["world"] == 1
    loss_one, loss_two = one["epochs"][-1]["val_loss"], two["epochs"][-1]["val_loss"]
    print(f"val_loss after 3 epochs: 1 process {loss_one:.4f}, 2 processes {loss_two:.4f}")
    assert abs(loss_two - loss_one) / loss_one < 0.02, (loss_one, loss_two)


def test_a_killed_process_stops_the_job_and_resumes_on_fewer_processes(store):
    checkpoint = str(store / "checkpoint")
    done, _ = _launch(store, 2, "killed.json", epochs=2, checkpoint=checkpoint, die_after=11)
    assert done.returncode != 0 and not (store / "killed.json").exists()
    saved = json.loads((store / "checkpoint" / "checkpoint.json").read_text())["loop"]
    assert saved["in_epoch"]["cells"] > 0            # the last checkpoint is mid-epoch
    done, resumed = _launch(store, 1, "resumed.json", epochs=2, checkpoint=checkpoint)
    assert done.returncode == 0, done.stderr[-3000:]
    _, fresh = _launch(store, 1, "fresh.json", epochs=2)
    assert len(resumed["epochs"]) == 2
    loss, want = resumed["epochs"][-1]["val_loss"], fresh["epochs"][-1]["val_loss"]
    print(f"val_loss: killed at 2 processes + resumed on 1 {loss:.4f}, uninterrupted 1 process {want:.4f}")
    assert abs(loss - want) / want < 0.02, (loss, want)
