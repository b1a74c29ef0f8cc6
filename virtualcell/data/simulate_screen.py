"""A simulated CRISPR knockout screen whose effects follow a gene network (for tests and examples).

Genes fall into ``n_modules`` co-expression modules: in control cells each module shares a latent
factor, so co-expression recovers the modules. Knocking out gene ``g`` of module ``m`` lowers
``g`` itself (``self_effect``) and moves the genes of ``m`` and of the next module along a
response program of ``m`` scaled by ``g``'s strength. Targets of one module therefore respond
alike, and a target never perturbed in training can be predicted from its module mates.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

__all__ = ["simulate_screen"]


def simulate_screen(n_genes: int = 50, n_modules: int = 5, n_targets: int = 10, n_control: int = 120,
                    n_per_target: int = 40, self_effect: float = 1.0, noise: float = 0.3,
                    seed: int = 0) -> ad.AnnData:
    """Log-expression-like AnnData [cells, genes]: ``obs.condition`` (``control`` or a target gene),
    ``obs.bio_rep`` (two replicates), ``var.module``; ``uns["simulate_screen"]`` holds the true mean
    response [targets, genes] of every target (``responses``) and their names (``targets``)."""
    if n_targets > n_genes:
        raise ValueError(f"n_targets ({n_targets}) cannot exceed n_genes ({n_genes}).")
    rng = np.random.default_rng(seed)
    module = np.arange(n_genes) % n_modules                                  # [G]
    base = rng.uniform(1.0, 3.0, n_genes)
    loading = rng.uniform(0.4, 0.9, n_genes)
    program = rng.normal(0.0, 1.0, (n_modules, n_genes))                    # response program of each module
    reach = (module[None, :] == np.arange(n_modules)[:, None]) | (module[None, :] == (np.arange(n_modules)[:, None] + 1) % n_modules)
    program = np.where(reach, program, 0.0)
    targets = [int(t) for t in rng.permutation(n_genes)[:n_targets]]
    strength = rng.uniform(0.6, 1.2, n_targets)
    names = [f"G{i:02d}" for i in range(n_genes)]

    def cells(n: int, shift: np.ndarray) -> np.ndarray:
        factors = rng.normal(0.0, 1.0, (n, n_modules))
        x = base + shift + loading * factors[:, module] + noise * rng.normal(0.0, 1.0, (n, n_genes))
        return np.clip(x, 0.0, None)

    responses = np.zeros((n_targets, n_genes))
    blocks, labels = [cells(n_control, np.zeros(n_genes))], ["control"] * n_control
    for i, g in enumerate(targets):
        responses[i] = strength[i] * program[module[g]]
        responses[i, g] -= self_effect
        blocks.append(cells(n_per_target, responses[i]))
        labels += [names[g]] * n_per_target
    x = np.concatenate(blocks).astype(np.float32)
    obs = pd.DataFrame({"condition": pd.Categorical(labels, categories=["control"] + [names[g] for g in targets]),
                        "bio_rep": pd.Categorical([f"rep_{1 + i % 2}" for i in range(len(labels))])},
                       index=[f"cell_{i}" for i in range(len(labels))])
    adata = ad.AnnData(X=x, obs=obs, var=pd.DataFrame({"module": module}, index=names))
    adata.uns["simulate_screen"] = {"targets": [names[g] for g in targets], "responses": responses.astype(np.float32),
                                    "seed": seed}
    return adata
