"""Per-cell responses: the ``optimal-transport`` manipulator beside mean-shift on an unseen cell type.

Simulated cells whose response to the stimulus grows with a continuous state (say, activation)
that varies from cell to cell; one cell type's stimulated cells are held out and predicted from its
control cells. Mean-shift moves every cell by the same vector, so the predicted population is as
narrow as the control; optimal transport gives each cell the response of its matched neighbours
in the other cell types, so the predicted spread follows the real one. Runs in seconds
(``pip install 'virtualcell[ot]'`` for POT). Method and defaults: docs/per_cell.md.
"""

import anndata as ad
import numpy as np
import pandas as pd

import virtualcell as vc
from virtualcell.metrics import edistance_ratio, pearson_delta, std_ratio, top_degs

rng = np.random.default_rng(0)
n, n_genes, types = 150, 40, ["type_0", "type_1", "type_2", "type_3"]
programme = np.zeros(n_genes)
programme[:8] = 2.0                                   # the genes the stimulus induces
blocks, obs = [], []
for k, cell_type in enumerate(types):
    baseline = 1.0 + 0.3 * rng.random(n_genes) + 0.2 * k
    for condition in ("control", "stimulated"):
        state = rng.random(n)                         # activation: 0 .. 1, per cell
        x = baseline + np.outer(state, np.r_[np.ones(4), np.zeros(n_genes - 4)])
        if condition == "stimulated":
            x = x + np.outer(state, programme)        # the response scales with the cell's state
        blocks.append(np.clip(x + 0.2 * rng.standard_normal(x.shape), 0, None))
        obs += [(cell_type, condition)] * n
adata = ad.AnnData(np.vstack(blocks).astype(np.float32),
                   obs=pd.DataFrame(obs, columns=["cell_type", "condition"], index=[f"cell_{i}" for i in range(len(obs))]),
                   var=pd.DataFrame(index=[f"gene_{i}" for i in range(n_genes)]))

held_out = (adata.obs.cell_type == "type_0") & (adata.obs.condition == "stimulated")
control = adata[(adata.obs.cell_type == "type_0") & (adata.obs.condition == "control")].copy()
real = adata[held_out].X
genes = list(adata.var_names)
degs = top_degs(real, control.X, genes, n=8)

for manipulator in ("mean-shift", "optimal-transport"):
    pipeline = vc.PerturbationPipeline(encoder="identity-encoder", manipulator=manipulator)
    pipeline.fit(adata[~held_out].copy(), condition_key="condition", control="control", context_key="cell_type",
                 seed=0, progress=False)
    predicted = pipeline.predict(control, target="stimulated", seed=0).X
    print(f"{manipulator:>17}: pearson_delta {pearson_delta(predicted, real, control.X):.3f}, "
          f"edistance_ratio {edistance_ratio(predicted, real, control.X, n_pcs=10):.3f}, "
          f"std_ratio (induced genes) {std_ratio(predicted, real, [genes.index(g) for g in degs]):.2f}")
