"""Simulated spatial slides with known domains (tissue layers made of mixed cell types).

Generative model, all from ``numpy.random.default_rng(seed)``:

- cells fall uniformly on a ``size x size`` square per section (``obsm["spatial"]``, unique w.p. 1);
- the slide is cut into ``n_domains`` horizontal layers whose borders wave (``sin`` of x), like
  cortical layers; a cell's layer is its domain (``obs["true_domain"]``);
- each domain has its own composition over ``n_cell_types`` cell types (Dirichlet with
  ``concentration``), so most cell types occur in several domains and a domain is seen mainly
  through the mixture of its cells' neighbours (a niche), not through one cell;
- a cell's log expression is ``relu(profile[type] + domain_shift * effect[domain] + noise)``
  [genes]; ``domain_shift`` (default small) adds a weak cell-intrinsic trace of the domain.

``counts=True`` turns ``X`` into Poisson counts with mean ``library * expm1(log expression)``
(integers as float32), as raw molecule counts of osmFISH / MERFISH.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

__all__ = ["simulate_spatial"]


def simulate_spatial(n_cells: int = 600, n_genes: int = 30, *, n_domains: int = 4, n_cell_types: int = 6,
                     n_sections: int = 1, size: float = 1000.0, concentration: float = 0.7,
                     noise: float = 0.5, domain_shift: float = 0.15, counts: bool = False,
                     library: float = 20.0, seed: int = 0) -> ad.AnnData:
    """A slide (or ``n_sections`` of them in one frame) of ``n_cells`` cells with known domains.

    Returns an AnnData [n_cells, n_genes] with ``obsm["spatial"]`` [n, 2], ``obs["true_domain"]``,
    ``obs["cell_type"]``, ``obs["section"]`` (categoricals) and the generating parameters in
    ``uns["simulation"]``. ``X`` is dense float32 log expression, or counts with ``counts=True``.
    """
    if n_cells < 1 or n_genes < 1 or n_domains < 1 or n_cell_types < 1 or n_sections < 1:
        raise ValueError("n_cells, n_genes, n_domains, n_cell_types and n_sections must all be >= 1.")
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0.0, size, size=(n_cells, 2))
    section = rng.integers(0, n_sections, size=n_cells)
    phase = rng.uniform(0, 2 * np.pi, size=n_sections)
    wave = 0.06 * size * np.sin(2 * np.pi * xy[:, 0] / size + phase[section])
    depth = np.clip((xy[:, 1] + wave) / size, 0.0, 1.0 - 1e-9)
    domain = (depth * n_domains).astype(np.int64)

    composition = rng.dirichlet(np.full(n_cell_types, concentration), size=n_domains)   # [domains, types]
    cumulative = composition.cumsum(axis=1)
    draws = rng.uniform(size=n_cells)
    cell_type = np.minimum((draws[:, None] > cumulative[domain]).sum(axis=1), n_cell_types - 1)

    profiles = rng.gamma(2.0, 0.6, size=(n_cell_types, n_genes)).astype(np.float32)
    effects = rng.normal(0.0, 1.0, size=(n_domains, n_genes)).astype(np.float32)
    x = profiles[cell_type] + domain_shift * effects[domain]
    x += noise * rng.standard_normal(size=(n_cells, n_genes), dtype=np.float32)
    x = np.maximum(x, 0.0, dtype=np.float32)
    if counts:
        x = rng.poisson(library * np.expm1(x)).astype(np.float32)

    obs = pd.DataFrame({
        "true_domain": pd.Categorical([f"D{d}" for d in domain], categories=[f"D{d}" for d in range(n_domains)]),
        "cell_type": pd.Categorical([f"T{t}" for t in cell_type], categories=[f"T{t}" for t in range(n_cell_types)]),
        "section": pd.Categorical([f"S{s}" for s in section], categories=[f"S{s}" for s in range(n_sections)]),
    }, index=[f"cell_{i}" for i in range(n_cells)])
    adata = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=[f"gene_{g}" for g in range(n_genes)]))
    adata.obsm["spatial"] = xy.astype(np.float64)
    adata.uns["simulation"] = {"model": "layered domains of mixed cell types", "seed": int(seed),
                               "n_domains": int(n_domains), "n_cell_types": int(n_cell_types),
                               "n_sections": int(n_sections), "concentration": float(concentration),
                               "noise": float(noise), "domain_shift": float(domain_shift), "counts": bool(counts)}
    return adata
