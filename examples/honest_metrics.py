"""Metrics v2 (docs/evaluation.md): why a prediction can look right on the means and still be wrong.

Three predictions of a held-out cell type's stimulated cells are scored against the truth, the
distribution metrics in a PCA fitted on the *other* cell types: the truth's own other half (the noise
ceiling), the right mean with the spread collapsed, and the mean-shift baseline. Then PERT-style
discrimination, and the same cells exported in the layout the field's scorer, cell-eval, reads.
"""

import numpy as np

from virtualcell.datasets import simulate_perturbation
from virtualcell.evaluate.celleval_export import celleval_pair
from virtualcell.metrics import discrimination, perturbation_metrics, top_degs

adata = simulate_perturbation(n_cells_per_group=120, n_genes=80, n_cell_types=3, seed=0)
x, genes = np.asarray(adata.X), list(map(str, adata.var_names))
here = (adata.obs.cell_type == "type_0").to_numpy()
stimulated = (adata.obs.condition == "stimulated").to_numpy()
stim, ctrl, outside = x[here & stimulated], x[here & ~stimulated], x[~here]   # S, C, the PCA reference
degs = top_degs(stim, ctrl, genes, n=20)

others = ~here & stimulated
shift = x[others].mean(0) - x[~here & ~stimulated].mean(0)                  # the other types' response
predictions = {
    "noise ceiling (half of S)": stim[::2],
    "right mean, collapsed spread": np.repeat(stim.mean(0, keepdims=True), len(ctrl), 0),
    "mean-shift baseline": ctrl + shift,
}
truth = {"noise ceiling (half of S)": stim[1::2]}
for label, pred in predictions.items():
    scores = perturbation_metrics(pred, truth.get(label, stim), ctrl, genes, n_top=20, degs=degs, reference=outside)
    print(f"{label:30s}", {k: round(scores[k], 3) for k in ("r2_mean_all", "pearson_delta", "edistance_ratio",
                                                               "mmd_ratio", "std_ratio_top20")})

# discrimination: predicting the same response for every target scores chance (0.5), however good its R²
real = {f"KO_{i}": stim + np.linspace(0, 1, len(genes)) * i for i in range(5)}
print("discrimination, perfect:", np.mean(list(discrimination(real, real).values())),
      "| one response for all:", np.mean(list(discrimination({t: stim for t in real}, real).values())))

pred_cells, real_cells = celleval_pair(real, real, ctrl, genes)            # cell-eval's (pred, real) layout
print("cell-eval layout:", pred_cells.shape, "cells,", {t: int(n) for t, n in real_cells.obs["target"].value_counts().items()})
