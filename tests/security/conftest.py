"""Fixtures for the hostile-input suite: small fitted artifacts, hubs, and a child process killed at a named step."""

from __future__ import annotations

import os
import signal

import pytest
import torch

import anndata as ad

from virtualcell import PerturbationPipeline
from virtualcell.datasets import simulate_perturbation
from virtualcell.representations.pca import PCAEncoder
from virtualcell.testing import tiny_expression


@pytest.fixture(scope="session")
def encoders():
    """Two PCA encoders fitted on different data (same genes): ``(a, b, x)``."""
    x, genes = tiny_expression(n_cells=60, n_genes=20, seed=0)
    y, _ = tiny_expression(n_cells=60, n_genes=20, seed=1)
    return PCAEncoder(n_components=4).fit(x, genes), PCAEncoder(n_components=4).fit(y * 3 + 1, genes), x


@pytest.fixture
def artifact(tmp_path, encoders):
    """A saved PCA artifact folder."""
    return encoders[0].save(tmp_path / "pca")


@pytest.fixture(scope="session")
def fitted_pipelines():
    """Two PerturbationPipelines fitted on different simulated data with the same genes."""
    import virtualcell as vc
    from virtualcell.datasets import simulate_perturbation

    out = []
    for seed in (0, 1):
        adata = simulate_perturbation(n_cells_per_group=20, n_genes=30, n_cell_types=2, seed=seed)
        out.append(vc.PerturbationPipeline(encoder={"name": "pca", "n_components": 5}).fit(
            adata, condition_key="condition", control="control", context_key="cell_type", progress=False))
    return out


def run_killed_at(step: str, action) -> int:
    """Fork a child that runs ``action()`` and SIGKILLs itself at ``faults.checkpoint(step)``; its exit status.

    Returns ``-9`` when the step was reached (killed), ``0`` when ``action`` finished without reaching it.
    """
    pid = os.fork()
    if pid == 0:  # child: no pytest teardown, no atexit
        code = 0
        try:
            torch.set_num_threads(1)

            def crash(at: str) -> None:
                if at == step:
                    os.kill(os.getpid(), signal.SIGKILL)

            if step != "never":  # "never": the action injects its own crash
                from virtualcell.registry import faults

                faults.checkpoint = crash
            action()
        except BaseException:  # noqa: BLE001 - report as exit status
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


@pytest.fixture
def killed_at():
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork (POSIX)")
    return run_killed_at


@pytest.fixture(scope="module")
def sim() -> ad.AnnData:
    """A small simulated perturbation (3 cell types, 30 genes), fresh per test module."""
    return simulate_perturbation(n_cells_per_group=20, n_genes=30, n_cell_types=3, seed=0)


@pytest.fixture(scope="module")
def fitted(sim) -> PerturbationPipeline:
    """PCA + latent arithmetic fitted on :func:`sim` with its cell types as contexts."""
    return PerturbationPipeline("pca", "latent-arithmetic").fit(sim, context_key="cell_type", progress=False)
