"""Export predictions to the layout the field's own scorer, ``cell-eval`` (PyPI), reads.

``cell-eval run`` / ``cell_eval.MetricsEvaluator(adata_pred, adata_real, control_pert=..., pert_col=...)``
compares two AnnData objects with the same genes in the same order:

- ``real``: the real control cells (label ``control``) and, for every perturbation, its real cells;
- ``pred``: the same control cells (copied: a prediction starts from them) and, for every
  perturbation, the predicted cells;

both with the perturbation label in ``obs[pert_col]`` and the same set of labels on both sides,
log-normalised expression in ``X`` (cell-eval checks this and would otherwise normalise again).
This module writes that layout (:func:`celleval_pair`, :func:`write_celleval_pair`) from per-target
matrices, and rebuilds it from a ``virtualcell benchmark pert`` output folder
(:func:`pair_from_benchmark`). It does not import cell-eval (a ``benchmarks`` extra).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["celleval_pair", "write_celleval_pair", "pair_from_benchmark", "PERT_COL", "CONTROL_LABEL"]

#: cell-eval's default perturbation column and control label
PERT_COL = "target"
CONTROL_LABEL = "non-targeting"


def _dense(x: Any, what: str, n_genes: int) -> np.ndarray:
    from scipy import sparse

    x = x.toarray() if sparse.issparse(x) else np.asarray(x)
    if x.ndim != 2 or x.shape[1] != n_genes or x.shape[0] == 0:
        raise ValueError(f"{what} must be [cells >= 1, {n_genes}]; got shape {x.shape}.")
    if not np.isfinite(x).all():
        raise ValueError(f"{what} contains NaN or infinite values.")
    return x.astype(np.float32)


def _stack(control: np.ndarray, groups: Mapping[str, np.ndarray], control_label: str, pert_col: str,
           genes: Sequence[str], prefix: str):
    import anndata as ad
    import pandas as pd

    labels = [control_label] * control.shape[0]
    blocks = [control]
    for target, cells in groups.items():
        labels += [str(target)] * cells.shape[0]
        blocks.append(cells)
    names = [f"{prefix}{i}" for i in range(len(labels))]
    obs = pd.DataFrame({pert_col: pd.Categorical(labels, categories=[control_label, *map(str, groups)])},
                       index=pd.Index(names, dtype=str))
    return ad.AnnData(X=np.vstack(blocks), obs=obs, var=pd.DataFrame(index=pd.Index(list(map(str, genes)), dtype=str)))


def celleval_pair(predicted: Mapping[str, Any], real: Mapping[str, Any], control: Any, genes: Sequence[str], *,
                  pert_col: str = PERT_COL, control_label: str = CONTROL_LABEL):
    """``(pred, real)`` AnnData in cell-eval's layout.

    Args:
        predicted: ``{target: [p_t, g]}`` predicted cells per perturbation.
        real: ``{target: [r_t, g]}`` real cells per perturbation (same targets as ``predicted``).
        control: ``[c, g]`` the real control cells the predictions start from (in both objects).
        genes: the ``g`` gene names, in the matrices' order.
        pert_col, control_label: the obs column and control label cell-eval is told about.
    """
    genes = [str(g) for g in genes]
    if len(set(genes)) != len(genes):
        raise ValueError("genes contains duplicate names.")
    if set(map(str, predicted)) != set(map(str, real)):
        missing = sorted(set(map(str, real)) ^ set(map(str, predicted)))
        raise ValueError(f"predicted and real must hold the same perturbations; they differ in {missing[:10]}.")
    if not predicted:
        raise ValueError("No perturbation to export.")
    if control_label in set(map(str, predicted)):
        raise ValueError(f"{control_label!r} is the control label; a perturbation cannot have it. Pass control_label=.")
    n_genes = len(genes)
    ctrl = _dense(control, "control", n_genes)
    order = list(real)
    pred_groups = {t: _dense(predicted[t], f"predicted[{t!r}]", n_genes) for t in order}
    real_groups = {t: _dense(real[t], f"real[{t!r}]", n_genes) for t in order}
    return (_stack(ctrl, pred_groups, control_label, pert_col, genes, "pred_"),
            _stack(ctrl, real_groups, control_label, pert_col, genes, "real_"))


def write_celleval_pair(out: str | Path, pred, real) -> tuple[Path, Path]:
    """Write ``out/pred.h5ad`` and ``out/real.h5ad`` atomically; returns both paths."""
    from .report import write_h5ad

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return write_h5ad(pred, out / "pred.h5ad"), write_h5ad(real, out / "real.h5ad")


def pair_from_benchmark(results_dir: str | Path, data: Any, *, pert_col: str = PERT_COL,
                        control_label: str = CONTROL_LABEL):
    """cell-eval's ``(pred, real)`` for a ``virtualcell benchmark pert`` output folder.

    Reads ``results.json`` (the split and preprocessing) and ``predictions/<target>.h5ad``, and
    rebuilds the real cells from ``data`` (the dataset's AnnData or path) with the same
    preprocessing and split.
    """
    import json

    import anndata as ad

    from ..pipelines.splits import pert_tasks
    from .cells import prepare_cells
    from .outputs import safe_name

    results_dir = Path(results_dir)
    report = json.loads((results_dir / "results.json").read_text())
    if report.get("protocol") != "pert":
        raise ValueError(f"{results_dir} holds a {report.get('protocol')!r} run; cell-eval's layout is for PERT.")
    adata = ad.read_h5ad(data) if isinstance(data, (str, Path)) else data
    split = report["split"]
    x, genes, _ = prepare_cells(adata, report["dataset"]["preprocess"])
    tasks = pert_tasks(adata.obs, condition_key=split["condition_key"], control=split["control"],
                       replicate_key=split["replicate_key"], holdout=split["holdout"],
                       train_replicates=split["train_replicates"], drop_conditions=split["drop_conditions"],
                       min_cells=1, targets=report["contexts"])
    predicted, real = {}, {}
    for task in tasks:
        cells = ad.read_h5ad(results_dir / "predictions" / f"{safe_name(task.name)}.h5ad")
        predicted[task.name] = np.asarray(cells[:, genes].X)
        real[task.name] = x[task.truth]
    return celleval_pair(predicted, real, x[tasks[0].source], genes, pert_col=pert_col, control_label=control_label)
