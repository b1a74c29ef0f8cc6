"""Tests for the public dataset loaders (virtualcell.data.public).

Real-data tests read ../shared/data (or $VIRTUALCELL_DATA) and skip when it is absent; the
download path is exercised offline through a pooch ``downloader`` that copies a local file.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import virtualcell.datasets as datasets
from virtualcell.data.public import (
    ENV_VAR,
    KANG2018_REGISTRY,
    PAPALEXI2021_REGISTRY,
    ChecksumError,
    file_sha256,
    kang2018,
    papalexi2021,
)
from virtualcell.data.simulate import simulate_perturbation
from virtualcell.evaluate.report import write_h5ad

SHARED = Path(os.environ.get(ENV_VAR) or Path(__file__).resolve().parents[2].parent / "shared" / "data")
SCGEN_VALID = SHARED / KANG2018_REGISTRY["scgen-valid"].filename
KANG_FULL = SHARED / KANG2018_REGISTRY["full"].filename
PAPALEXI = SHARED / PAPALEXI2021_REGISTRY["crispr-thp1"].filename


def _needs(path: Path):
    return pytest.mark.skipif(not path.exists(), reason=f"real data file not found: {path}")


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    """Tests start without $VIRTUALCELL_DATA so nothing is found by accident."""
    monkeypatch.delenv(ENV_VAR, raising=False)


@pytest.fixture
def tiny(tmp_path) -> tuple[Path, str]:
    """A tiny Kang-like h5ad (condition + cell_type) and its sha256."""
    a = simulate_perturbation(n_cells_per_group=3, n_genes=5, n_cell_types=2, seed=0)
    del a.uns["ground_truth"]
    path = tmp_path / "tiny_source.h5ad"
    write_h5ad(a, path)
    return path, file_sha256(path)


def _copy_downloader(source: Path, calls: list[str] | None = None):
    def download(url: str, output_file, pooch) -> None:  # pooch's downloader signature
        if calls is not None:
            calls.append(url)
        shutil.copyfile(source, output_file)

    return download


def _failing_downloader(url: str, output_file, pooch) -> None:
    raise AssertionError(f"no download expected, got a request for {url}")


# --------------------------------------------------------------------------------------------
# registry and public module
# --------------------------------------------------------------------------------------------
def test_registry_and_public_module():
    for rec in [*KANG2018_REGISTRY.values(), *PAPALEXI2021_REGISTRY.values()]:
        assert re.fullmatch(r"[0-9a-f]{64}", rec.sha256)
        assert rec.filename.endswith(".h5ad")
    url = KANG2018_REGISTRY["scgen-valid"].url
    assert url.startswith("https://github.com/theislab/scgen/raw/") and url.endswith("/data/valid.h5ad")
    assert re.search(r"/raw/[0-9a-f]{40}/", url)  # pinned to a commit
    assert set(datasets.__all__) >= {"simulate_perturbation", "simulate_time_course", "kang2018", "papalexi2021"}
    assert datasets.kang2018 is kang2018
    with pytest.raises(ValueError, match="unknown kang2018 variant"):
        kang2018(variant="nope")


# --------------------------------------------------------------------------------------------
# real data (skipped when ../shared/data is absent)
# --------------------------------------------------------------------------------------------
@_needs(SCGEN_VALID)
def test_kang_scgen_valid_local():
    a = kang2018(SCGEN_VALID)
    assert a.shape == (1975, 6998)
    assert list(a.obs["condition"].cat.categories) == ["control", "stimulated"]
    assert set(a.obs["cell_type"]) == {"CD4T", "FCGR3A+Mono", "CD14+Mono", "B", "NK", "CD8T", "Dendritic"}


@_needs(SCGEN_VALID)
def test_kang_env_var_lookup_without_download(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(SHARED))
    a = kang2018(cache_dir=tmp_path, downloader=_failing_downloader)
    assert a.n_obs == 1975
    assert not any(tmp_path.iterdir())  # nothing downloaded / cached


@_needs(SCGEN_VALID)
def test_local_file_of_wrong_variant_fails_checksum():
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        kang2018(SCGEN_VALID, variant="full")


@_needs(KANG_FULL)
def test_kang_full_local():
    a = kang2018(KANG_FULL, variant="full")
    assert a.shape == (13999, 14053)
    assert list(a.obs["condition"].cat.categories)[0] == "control"
    assert {"cell_type", "cell_type_coarse"} <= set(a.obs.columns)
    assert a.obs["cell_type"].nunique() == 13


@_needs(PAPALEXI)
def test_papalexi_local():
    a = papalexi2021(PAPALEXI)
    assert a.shape == (20729, 299)
    counts = a.obs["condition"].value_counts()
    assert a.obs["condition"].cat.categories[0] == "control"
    assert counts["control"] == 1923 and counts["ambiguous"] == 4537
    b = papalexi2021(PAPALEXI, drop_ambiguous=True)
    assert b.n_obs == 20729 - 4537 and "ambiguous" not in b.obs["condition"].cat.categories


# --------------------------------------------------------------------------------------------
# download path, offline
# --------------------------------------------------------------------------------------------
def test_download_with_custom_downloader_and_cache(tmp_path, tiny):
    source, sha = tiny
    cache = tmp_path / "cache"
    calls: list[str] = []
    url = "https://example.invalid/tiny.h5ad"
    a = kang2018(cache_dir=cache, url=url, known_hash=f"sha256:{sha}", downloader=_copy_downloader(source, calls))
    assert calls == [url]
    assert a.shape == (12, 5)
    assert list(a.obs["condition"].cat.categories) == ["control", "stimulated"]
    cached = cache / KANG2018_REGISTRY["scgen-valid"].filename
    assert cached.is_file() and file_sha256(cached) == sha
    # second call: served from the cache, no download (plain-hex hash accepted too)
    b = kang2018(cache_dir=cache, url=url, known_hash=sha, downloader=_failing_downloader)
    np.testing.assert_array_equal(a.X, b.X)
    # a cached file with a registry-less variant is also found
    shutil.copyfile(source, cache / PAPALEXI2021_REGISTRY["crispr-thp1"].filename)
    assert papalexi2021(cache_dir=cache, known_hash=sha).n_obs == 12


def test_download_wrong_hash_is_a_clear_error(tmp_path, tiny):
    source, _ = tiny
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match="sha256 mismatch.*example.invalid"):
        kang2018(cache_dir=cache, url="https://example.invalid/x.h5ad", known_hash="0" * 64,
                 downloader=_copy_downloader(source))
    assert not (cache / KANG2018_REGISTRY["scgen-valid"].filename).exists()  # bad download discarded
    # and the registry hash rejects a file that is not the real one
    with pytest.raises(ChecksumError):
        kang2018(cache_dir=cache, url="https://example.invalid/x.h5ad", downloader=_copy_downloader(source))
    # verify=False accepts it
    a = kang2018(cache_dir=cache, url="https://example.invalid/x.h5ad", verify=False,
                 downloader=_copy_downloader(source))
    assert a.n_obs == 12


def test_local_path_hash_and_columns(tmp_path, tiny):
    source, sha = tiny
    with pytest.raises(ChecksumError, match="verify=False"):
        kang2018(source)  # not the real scGen file
    assert kang2018(source, known_hash=sha).n_obs == 12
    assert kang2018(source, verify=False).n_obs == 12
    with pytest.raises(FileNotFoundError):
        kang2018(tmp_path / "missing.h5ad")

    import anndata as ad

    a = ad.read_h5ad(source)
    del a.obs["cell_type"]
    bad = tmp_path / "no_cell_type.h5ad"
    write_h5ad(a, bad)
    with pytest.raises(ValueError, match=r"lacks the expected obs column.*cell_type"):
        kang2018(bad, verify=False)
    assert papalexi2021(bad, verify=False).n_obs == 12  # papalexi only needs 'condition'


def test_env_var_takes_precedence_and_is_verified(monkeypatch, tmp_path, tiny):
    source, sha = tiny
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copyfile(source, folder / KANG2018_REGISTRY["full"].filename)
    monkeypatch.setenv(ENV_VAR, str(folder))
    with pytest.raises(ChecksumError):
        kang2018(variant="full", cache_dir=tmp_path / "cache")
    a = kang2018(variant="full", cache_dir=tmp_path / "cache", known_hash=sha)
    assert isinstance(a.obs["condition"].dtype, pd.CategoricalDtype)


def test_no_url_and_no_file_explains_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match=ENV_VAR):
        kang2018(variant="full", cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="url="):
        papalexi2021(cache_dir=tmp_path)
