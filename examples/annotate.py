"""Label transfer: PCA (the default, and the best on Kang's PBMCs) beside a small gene-token transformer.

Both learn the reference's labels in their representation and label a stimulated query, with calibrated
confidence. A transformer trained from scratch on one reference is slower and no better than PCA; it is
for starting from a pretrained checkpoint folder (``encoder="path/to/checkpoint"``, Geneformer-style).
Runs in seconds on synthetic data; on real data use ``virtualcell annotate`` (PCA by default).
"""

import numpy as np

from virtualcell.datasets import simulate_perturbation
from virtualcell.pipelines.annotate import annotate

adata = simulate_perturbation(n_cells_per_group=60, n_genes=60, n_cell_types=3, seed=0)
reference = adata[adata.obs.condition == "control"].copy()      # labelled cells
query = adata[adata.obs.condition == "stimulated"].copy()       # the same types, perturbed
truth = query.obs.pop("cell_type").astype(str).to_numpy()

transformer = {"name": "transformer", "hidden_size": 32, "num_layers": 1, "num_heads": 2, "max_epochs": 5}
for encoder in ("pca", transformer):
    labelled = annotate(query, reference, label_key="cell_type", encoder=encoder, seed=0, copy=True)
    predicted = labelled.obs["cell_type_predicted"].astype(str).to_numpy()
    confidence = labelled.obs["cell_type_predicted_confidence"].to_numpy()
    name = encoder if isinstance(encoder, str) else encoder["name"]
    print(f"{name}: accuracy {np.mean(predicted == truth):.2f}, mean confidence {confidence.mean():.2f}, "
          f"temperature {labelled.uns['cell_type_predicted']['calibration']['temperature']:.2f}")
