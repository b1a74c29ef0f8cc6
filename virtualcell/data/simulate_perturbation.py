"""``simulate_perturbation``: cell types x conditions (optionally doses) with a known mean response.

The generative model is described in :mod:`virtualcell.data.simulate`; its pieces are in
``simulate_model.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from .simulate_model import (HILL_N, baselines, expected_relu_mean, float_list, gene_names, hill, noise_model,
                             perturbation_effects, sample_group, simulation_params, to_counts)

__all__ = ["simulate_perturbation"]


def simulate_perturbation(
    n_cells_per_group: int = 100,
    n_genes: int = 50,
    n_cell_types: int = 3,
    *,
    conditions: Sequence[str] = ("control", "stimulated"),
    effect_size: float = 1.0,
    heterogeneity: float = 0.3,
    de_fraction: float = 0.2,
    doses: Sequence[float] | None = None,
    counts: bool = False,
    noise: float = 0.3,
    depth: float = 20.0,
    seed: int = 0,
) -> ad.AnnData:
    """Simulate cell types x conditions with a known per-group mean response.

    ``conditions[0]`` is the control. For cell type ``k`` (baseline ``mu_k``, non-negative) and
    non-control condition ``j`` the noise-free log profile is ``mu_k + delta_{k,j}`` with::

        delta_{k,j} = effect_size * (shared_j + heterogeneity * specific_{k,j})

    ``shared_j`` is sparse on ``round(de_fraction * n_genes)`` genes (magnitudes 0.5–1.5, up or
    down); ``specific_{k,j}`` perturbs those genes per type and adds a few type-specific DE genes.
    Cells are ``relu(profile + low-rank variation + Gaussian noise)`` (see module docstring).

    Doses: when ``doses`` is given, the ``n_cells_per_group`` cells of every (type, non-control
    condition) group are spread evenly (cyclically) over ``doses`` and ``obs['dose']`` is set
    (0 for controls). The effect then scales with a Hill curve,
    ``delta(d) = hill(d) * delta`` with ``hill(d) = d^n / (ec50^n + d^n)``, ``n = 2`` and
    ``ec50`` = median of the positive doses (stored in ``uns['ground_truth']['dose_response']``).

    Args:
        n_cells_per_group: cells per (cell type, condition) group.
        n_genes: number of genes ``G``.
        n_cell_types: number of cell types ``K`` (named ``type_0``...).
        conditions: condition names, control first (at least one).
        effect_size: global scale of every perturbation effect.
        heterogeneity: weight of the cell-type-specific part of the effect (0 = identical shift).
        de_fraction: fraction of genes in each condition's shared DE set.
        doses: optional dose levels for the non-control conditions (see above).
        counts: if True, ``X`` holds NB integer counts (see module docstring).
        noise: typical per-gene Gaussian noise std in log space.
        depth: typical size factor of the count model (``counts=True`` only).
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        AnnData ``[K * len(conditions) * n_cells_per_group, G]``; ``X`` float32 dense, ``>= 0``.
        ``obs``: ``condition`` (categorical, control first), ``cell_type`` (categorical),
        ``dose`` (when ``doses``), ``size_factor`` (when ``counts``). ``uns['ground_truth']``:
        JSON-able dict with ``means[cell_type][condition]`` (expected ``X`` mean in log space,
        list of ``G`` floats), ``profiles`` (pre-relu), ``effects`` (``delta``),
        ``de_genes[condition]`` (genes with a non-zero effect in any type),
        ``de_genes_shared``, ``de_genes_specific[condition][cell_type]``, ``noise_sd`` and, with
        doses, ``dose_means[cell_type][condition][str(dose)]``.
    """
    conditions, dose_levels = _check_arguments(conditions, n_cells_per_group, n_genes, n_cell_types, de_fraction,
                                               doses)

    rng = np.random.default_rng(seed)
    cell_types = [f"type_{k}" for k in range(n_cell_types)]
    mu = baselines(rng, n_genes, n_cell_types)
    W, sigma = noise_model(rng, n_genes, noise)
    sd = np.sqrt((W**2).sum(0) + sigma**2)  # [G] total std of the pre-relu Gaussian

    control = conditions[0]
    deltas, de_shared, de_specific, de_genes = _condition_effects(rng, mu, conditions, cell_types, effect_size,
                                                                  heterogeneity, de_fraction)

    ec50 = None
    if dose_levels is not None:
        pos = dose_levels[dose_levels > 0]
        ec50 = float(np.median(pos)) if pos.size else 1.0

    blocks: list[np.ndarray] = []
    obs_cond: list[str] = []
    obs_type: list[str] = []
    obs_dose: list[float] = []
    means: dict[str, dict[str, list[float]]] = {}
    profiles: dict[str, dict[str, list[float]]] = {}
    effects: dict[str, dict[str, list[float]]] = {}
    dose_means: dict[str, dict[str, dict[str, list[float]]]] = {}
    for k, ct in enumerate(cell_types):
        means[ct], profiles[ct], effects[ct], dose_means[ct] = {}, {}, {}, {}
        for cond in conditions:
            d_kj = deltas[cond][k]
            cell_doses, cell_prof, profile, group_mean, per_dose = _group_profiles(
                mu[k], d_kj, dose_levels if cond != control else None, ec50, n_cells_per_group, sd)
            if dose_levels is not None:
                dose_means[ct][cond] = per_dose if cond != control else {"0.0": float_list(group_mean)}
            blocks.append(sample_group(rng, cell_prof, W, sigma))
            obs_cond += [cond] * n_cells_per_group
            obs_type += [ct] * n_cells_per_group
            obs_dose += list(cell_doses)
            means[ct][cond] = float_list(group_mean)
            profiles[ct][cond] = float_list(profile)
            effects[ct][cond] = float_list(d_kj)

    X = np.concatenate(blocks, axis=0)
    obs = pd.DataFrame(
        {
            "condition": pd.Categorical(obs_cond, categories=conditions),
            "cell_type": pd.Categorical(obs_type, categories=cell_types),
        },
        index=pd.Index([f"cell_{i}" for i in range(X.shape[0])]),
    )
    if dose_levels is not None:
        obs["dose"] = np.asarray(obs_dose, dtype=np.float64)
    if counts:
        X, size_factor = to_counts(rng, X, depth)
        obs["size_factor"] = size_factor
    ground_truth: dict[str, Any] = {
        "kind": "perturbation",
        "space": "log",
        "control": control,
        "conditions": conditions,
        "cell_types": cell_types,
        "means": means,
        "profiles": profiles,
        "effects": effects,
        "de_genes": de_genes,
        "de_genes_shared": de_shared,
        "de_genes_specific": de_specific,
        "noise_sd": float_list(sd),
        "params": simulation_params(effect_size=effect_size, heterogeneity=heterogeneity, de_fraction=de_fraction,
                                    noise=noise, counts=counts, seed=seed),
    }
    if dose_levels is not None:
        ground_truth["dose_response"] = {
            "model": "hill",
            "ec50": ec50,
            "hill_n": HILL_N,
            "doses": float_list(dose_levels),
        }
        ground_truth["dose_means"] = dose_means
    adata = ad.AnnData(
        X=np.ascontiguousarray(X, dtype=np.float32),
        obs=obs,
        var=pd.DataFrame(index=pd.Index([f"gene_{g}" for g in range(n_genes)])),
    )
    adata.uns["ground_truth"] = ground_truth
    return adata


def _check_arguments(conditions: Sequence[str], n_cells_per_group: int, n_genes: int, n_cell_types: int,
                     de_fraction: float, doses: Sequence[float] | None) -> tuple[list[str], np.ndarray | None]:
    """The condition names as strings and the dose levels (or None); refuses impossible arguments."""
    conditions = [str(c) for c in conditions]
    if len(conditions) < 1 or len(set(conditions)) != len(conditions):
        raise ValueError(f"`conditions` must be non-empty and unique, got {conditions!r}")
    if n_cells_per_group < 1 or n_genes < 1 or n_cell_types < 1:
        raise ValueError("n_cells_per_group, n_genes and n_cell_types must be >= 1")
    if not 0.0 <= de_fraction <= 1.0:
        raise ValueError(f"de_fraction must be in [0, 1], got {de_fraction}")
    dose_levels = None if doses is None else np.asarray([float(d) for d in doses])
    if dose_levels is not None and (dose_levels.size == 0 or np.any(dose_levels < 0)):
        raise ValueError(f"`doses` must be a non-empty sequence of non-negative numbers, got {doses!r}")
    return conditions, dose_levels


def _condition_effects(rng: np.random.Generator, mu: np.ndarray, conditions: list[str], cell_types: list[str],
                       effect_size: float, heterogeneity: float, de_fraction: float
                       ) -> tuple[dict[str, np.ndarray], dict[str, list[str]], dict[str, dict[str, list[str]]],
                                  dict[str, list[str]]]:
    """Per condition: ``delta`` [K, G] (zeros for the control), shared, specific and all DE genes."""
    control, perturbed = conditions[0], conditions[1:]
    deltas: dict[str, np.ndarray] = {control: np.zeros_like(mu)}
    de_shared: dict[str, list[str]] = {}
    de_specific: dict[str, dict[str, list[str]]] = {}
    de_genes: dict[str, list[str]] = {control: []}
    for cond in perturbed:
        delta, _, shared_genes, spec_genes = perturbation_effects(rng, mu, de_fraction, heterogeneity)
        delta = effect_size * delta
        deltas[cond] = delta
        de_shared[cond] = gene_names(shared_genes) if effect_size != 0 else []
        nonzero = np.flatnonzero(np.any(np.abs(delta) > 0, axis=0))
        de_genes[cond] = gene_names(nonzero)
        de_specific[cond] = {
            ct: (gene_names(g) if heterogeneity != 0 and effect_size != 0 else [])
            for ct, g in zip(cell_types, spec_genes)
        }
    return deltas, de_shared, de_specific, de_genes


def _group_profiles(mu_k: np.ndarray, d_kj: np.ndarray, dose_levels: np.ndarray | None, ec50: float | None,
                    n: int, sd: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict | None]:
    """One (cell type, condition) group: cell doses [n], cell profiles [n, G], mean profile [G],
    expected mean [G] and, with doses, the expected mean per dose."""
    if dose_levels is not None:
        cell_doses = dose_levels[np.arange(n) % dose_levels.size]
        scale = hill(cell_doses, ec50)
        cell_prof = mu_k + scale[:, None] * d_kj
        per_dose = {str(float(d)): float_list(expected_relu_mean(mu_k + hill(d, ec50) * d_kj, sd)) for d in dose_levels}
        return cell_doses, cell_prof, mu_k + scale.mean() * d_kj, expected_relu_mean(cell_prof, sd).mean(0), per_dose
    profile = mu_k + d_kj
    return np.zeros(n), np.broadcast_to(profile, (n, len(profile))), profile, expected_relu_mean(profile, sd), None
