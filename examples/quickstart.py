"""Predict an unseen cell type's response with PCA + scGen-style latent arithmetic (runs in seconds)."""

import virtualcell as vc
from virtualcell.datasets import simulate_perturbation
from virtualcell.metrics import perturbation_metrics

adata = simulate_perturbation(n_cells_per_group=150, n_genes=200, n_cell_types=4, seed=0)
held_out = (adata.obs.cell_type == "type_0") & (adata.obs.condition == "stimulated")
train = adata[~held_out].copy()
control = adata[(adata.obs.cell_type == "type_0") & (adata.obs.condition == "control")]

pipeline = vc.PerturbationPipeline(encoder="pca", manipulator="latent-arithmetic")
pipeline.fit(train, condition_key="condition", control="control", context_key="cell_type", seed=0)
predicted = pipeline.predict(control, target="stimulated")        # AnnData: log-normalised, same genes

others = adata[adata.obs.cell_type != "type_0"]                  # the fair PCA space: cells outside type_0
print(perturbation_metrics(predicted.X, adata[held_out].X, control.X, list(adata.var_names), reference=others.X))
pipeline.save("quickstart-pipeline", overwrite=True)               # one folder, no pickle
same = vc.PerturbationPipeline.load("quickstart-pipeline")
