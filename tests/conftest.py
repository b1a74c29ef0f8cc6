"""Fixtures shared by the test modules, and the test plugins' throw-away install.

The plugin packages in ``tests/plugins/`` (the toy plugin proves the registry: a third-party component,
a plugin that fails to import, a name claimed twice) are installed for the test session only: with
``pip install --target`` into a folder of the system's temporary directory (keyed by the plugins'
sources, so later sessions reuse it), put first on ``sys.path`` and on ``PYTHONPATH`` (for the CLI
subprocesses) while the session runs, and taken off again at its end. The user's environment is
never written to, so after the tests every ``virtualcell`` command sees only what the user installed.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import pytest
import torch

PLUGINS = Path(__file__).parent / "plugins"
_SOURCES = ("pyproject.toml", "*.py", "*/*.py")


def _plugin_folders() -> list[Path]:
    return sorted(p for p in PLUGINS.iterdir() if (p / "pyproject.toml").exists()) if PLUGINS.is_dir() else []


def _sources_key(folders: list[Path]) -> str:
    digest = hashlib.sha256(f"{sys.version_info[:2]}".encode())
    for folder in folders:
        for pattern in _SOURCES:
            for path in sorted(folder.glob(pattern)):
                digest.update(str(path.relative_to(PLUGINS)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def install_test_plugins() -> Path | None:
    """Install ``tests/plugins/*`` into a throw-away folder (reused while their sources are unchanged).

    Returns the folder, or None (with a warning; the plugin tests then skip) when pip cannot build them.
    """
    folders = _plugin_folders()
    if not folders:
        return None
    target = Path(tempfile.gettempdir()) / f"virtualcell-test-plugins-{_sources_key(folders)}"
    if (target / ".complete").exists():
        return target
    staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.tmp-"))
    try:
        for folder in folders:  # build from a copy: setuptools writes build/ and *.egg-info beside the sources
            shutil.copytree(folder, staging / "src" / folder.name,
                            ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        offline = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
        result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                                 "--disable-pip-version-check", *offline, "--target", str(staging / "site"),
                                 *[str(staging / "src" / f.name) for f in folders]],
                                capture_output=True, text=True)
        if result.returncode:
            warnings.warn(f"could not install the test plugins ({result.stderr.strip()[-300:]}); their tests skip")
            return None
        (staging / "site" / ".complete").write_text("installed by tests/conftest.py for the test sessions\n")
        try:
            os.replace(staging / "site", target)
        except OSError:  # another session installed the same sources first
            if not (target / ".complete").exists():
                raise
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def pytest_configure(config):
    """Put the throw-away plugin install on ``sys.path`` and ``PYTHONPATH`` before any test module is collected."""
    site = install_test_plugins()
    if site is None:
        return
    config._virtualcell_plugins = (str(site), os.environ.get("PYTHONPATH"))
    sys.path.insert(0, str(site))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    importlib.invalidate_caches()


def pytest_unconfigure(config):
    site, pythonpath = getattr(config, "_virtualcell_plugins", (None, None))
    if site is None:
        return
    if site in sys.path:
        sys.path.remove(site)
    if pythonpath is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = pythonpath


@pytest.fixture
def one_torch_thread():
    """Run the test with one torch CPU thread (training tests: stable timing, no oversubscription)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def counts_store(tmp_path_factory):
    """``(adata, path)``: 360 simulated cells (3 cell types x control / stimulated) x 40 genes of counts, written
    as a CSR h5ad; shared by the fit-from-disk tests (read only: copy before changing it)."""
    import numpy as np
    import scipy.sparse as sp

    from virtualcell.data.simulate_perturbation import simulate_perturbation

    adata = simulate_perturbation(60, 40, 3, counts=True, seed=0)
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    path = tmp_path_factory.mktemp("counts_store") / "cells.h5ad"
    adata.write_h5ad(path)
    return adata, path


@pytest.fixture
def kill_reads_after():
    """``kill(rows, n)``: make a ``DiskRows`` raise KeyboardInterrupt (a killed process) after ``n`` batch reads."""
    def kill(rows, n: int):
        original, seen = rows.transformed, []

        def dying(raw):
            seen.append(1)
            if len(seen) > n:
                raise KeyboardInterrupt("killed")
            return original(raw)
        rows.transformed = dying
        return rows
    return kill


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 server (moto's server mode) on a free loopback port for the whole session; yields its URL."""
    import logging
    import socket

    pytest.importorskip("moto.server", reason="the S3 tests need moto[server] (pip install -e '.[test]')")
    pytest.importorskip("s3fs", reason="the S3 tests need s3fs (pip install -e '.[test]')")
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log per request
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_server, monkeypatch, request):
    """A fresh bucket on :func:`s3_server`; the AWS_* environment points s3fs (and subprocesses) at it.

    Yields ``"s3://<bucket>"``.
    """
    import re
    import uuid

    import s3fs

    for key, value in {"AWS_ENDPOINT_URL": s3_server, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_SESSION_TOKEN": "testing"}.items():
        monkeypatch.setenv(key, value)
    s3fs.S3FileSystem.clear_instance_cache()
    bucket = f"{re.sub(r'[^a-z0-9]', '-', request.node.name.lower())[:40].strip('-')}-{uuid.uuid4().hex[:8]}"
    s3fs.S3FileSystem().mkdir(bucket)
    yield f"s3://{bucket}"
    s3fs.S3FileSystem.clear_instance_cache()
