"""In-silico knockout screen: predict every listed target from the same control cells and rank them.

>>> table = screen(pipeline, control_cells, ["STAT1", "JAK2", "CMTM6"], n_samples=20)   # doctest: +SKIP

For each target ``t`` the pipeline predicts the control cells under ``t``; with ``S`` samples
(``n_samples``) the decoded cells are ``P_s`` [n, genes]. Columns of the returned table:

- ``effect_size``: ‖mean over samples and cells of ``P_s`` − mean of the control cells‖₂ (the L2
  norm of the predicted pseudobulk shift, in the pipeline's expression space); ``rank_effect`` 1 = largest.
- ``uncertainty``: the standard deviation over samples of each sample's shift norm, where the
  manipulator samples (``stochastic`` and ``n_samples > 1``), else empty (NaN); ``rank_uncertainty``
  1 = most uncertain, empty where ``uncertainty`` is (a deterministic manipulator, or ``n_samples=1``).
- ``cell_spread``: the standard deviation over cells of each cell's ‖predicted − its control profile‖₂
  (how unevenly the knockout moves the cells; reported for every manipulator).
- ``seen``: whether the target had cells in training (else the prediction is for an unseen target).
- ``top_genes``: the five genes of largest predicted |shift|, signed (``GENE:+0.42``).

The screen starts from control cells: when ``cells`` holds the fitted condition column and cells of
other conditions too, only the control cells are used (with a warning; mixing perturbed cells into
the baseline changes every shift and the ranking), and ``cells`` without any control cell are refused.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import anndata as ad
import pandas as pd
import torch

from ..data.checks import DataError
from ..execution import progress_bar
from .perturbation import PerturbationPipeline

__all__ = ["screen", "check_targets", "control_cells", "SCREEN_COLUMNS"]

SCREEN_COLUMNS = ("target", "effect_size", "rank_effect", "uncertainty", "rank_uncertainty", "cell_spread", "seen",
                  "n_cells", "n_samples", "top_genes")


def check_targets(pipeline: PerturbationPipeline, targets: Sequence[str]) -> list[str]:
    """The targets as strings, after checking that the pipeline knows every one (one error naming all unknown)."""
    targets = [str(t).strip() for t in targets if str(t).strip()]
    if not targets:
        raise DataError("No targets to screen; pass at least one gene (e.g. --targets STAT1,JAK2).")
    duplicated = sorted({t for t in targets if targets.count(t) > 1})
    if duplicated:
        raise DataError(f"Targets listed more than once: {duplicated}; list each once.")
    known = pipeline.conditions
    unknown = [t for t in targets if t not in known]
    if unknown:
        coverage = pipeline.manipulator.coverage() or f"its conditions: {known.labels[:20]}"
        raise DataError(f"The pipeline cannot predict {len(unknown)} target(s) {unknown[:20]}: they were not seen in "
                        f"training and are not genes of the manipulator's network ({coverage}). Fit with a "
                        "gene-network manipulator whose network covers them, or leave them out.")
    control = pipeline.metadata["control"]
    if control in targets:
        raise DataError(f"{control!r} is the control label, not a knockout; leave it out of the targets.")
    return targets


def control_cells(pipeline: PerturbationPipeline, cells: ad.AnnData) -> ad.AnnData:
    """The control cells of ``cells`` (all of them when it has no condition column); see the module doc."""
    key, control = pipeline.metadata["condition_key"], pipeline.metadata["control"]
    if key not in cells.obs:
        return cells
    labels = cells.obs[key].astype(str).to_numpy()
    is_control = labels == control
    if is_control.all():
        return cells
    others = sorted(set(labels[~is_control]))
    if not is_control.any():
        raise DataError(f"None of the {cells.n_obs} cells is {control!r} (adata.obs[{key!r}] holds {others[:10]}); a "
                        f"screen knocks genes out in control cells. Pass them: adata[adata.obs[{key!r}] == "
                        f"{control!r}] (CLI: --cells '{key}={control}').")
    warnings.warn(f"screen uses the {int(is_control.sum())} {control!r} cells of the {cells.n_obs} given and leaves "
                  f"out {int((~is_control).sum())} cells of other conditions ({others[:5]}{' ...' if len(others) > 5 else ''}"
                  f"): a perturbed cell in the baseline changes every shift. Pass only control cells to silence this "
                  f"(CLI: --cells '{key}={control}').", stacklevel=3)
    return cells[is_control]


def screen(pipeline: PerturbationPipeline, cells: ad.AnnData, targets: Sequence[str], *, n_samples: int = 1,
           seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """Rank ``targets`` by the predicted effect of knocking each out in ``cells`` (control cells).

    Returns one row per target (columns :data:`SCREEN_COLUMNS`), sorted by ``effect_size`` (largest first).
    """
    targets = check_targets(pipeline, targets)
    if cells.n_obs == 0:
        raise DataError("No control cells to screen from (the AnnData is empty); check --cells.")
    cells = control_cells(pipeline, cells)
    genes = list(pipeline.decoder.output_features)
    control = pipeline.prepare(cells).double().cpu()                          # [n, genes] (fitted genes)
    if list(pipeline.preprocessing.genes) != genes:
        raise DataError("screen needs a decoder whose outputs are the fitted genes (expression); this pipeline "
                        f"decodes {len(genes)} outputs.")
    stochastic = pipeline.manipulator.stochastic and n_samples > 1
    rows = []
    for target in progress_bar(targets, desc="screen", enabled=progress):
        decoded, _ = pipeline.predict_samples(cells, target=target, n_samples=n_samples, seed=seed,
                                              context_effect_scale=0.0)
        decoded = decoded.double().cpu()                                     # [S, n, genes]
        shifts = decoded.mean(1) - control.mean(0)                            # [S, genes]
        mean_shift = shifts.mean(0)
        per_cell = (decoded.mean(0) - control).norm(dim=1)                    # [n]
        top = torch.argsort(mean_shift.abs(), descending=True)[:5].tolist()
        rows.append({
            "target": target, "effect_size": float(mean_shift.norm()),
            "uncertainty": float(shifts.norm(dim=1).std()) if stochastic else float("nan"),
            "cell_spread": float(per_cell.std()) if len(per_cell) > 1 else 0.0, "seen": pipeline.manipulator.was_seen(pipeline.conditions.id(target)),
            "n_cells": int(cells.n_obs), "n_samples": int(n_samples),
            "top_genes": ",".join(f"{genes[i]}:{float(mean_shift[i]):+.3f}" for i in top),
        })
    table = pd.DataFrame(rows)
    table["rank_effect"] = table["effect_size"].rank(ascending=False, method="first").astype(int)
    table["rank_uncertainty"] = table["uncertainty"].rank(ascending=False, method="first").astype("Int64")  # NA: none
    return table.sort_values("rank_effect").reset_index(drop=True)[list(SCREEN_COLUMNS)]
