"""Choose a pipeline on your own data: inner leave-one-cell-type-out cross-validation, then fit the winner.

Never looks at the held-out cells: type_0's stimulated cells are removed before `select` sees anything,
and the chosen pipeline is judged on them afterwards. Runs in seconds on 2 CPU cores (simulated data).
"""

import virtualcell as vc
from virtualcell.datasets import simulate_perturbation
from virtualcell.metrics import perturbation_metrics

adata = simulate_perturbation(n_cells_per_group=60, n_genes=60, n_cell_types=5, seed=0)
held_out = ((adata.obs.cell_type == "type_0") & (adata.obs.condition == "stimulated")).to_numpy()
train = adata[~held_out].copy()

pipeline = vc.select(
    train, candidates=["control", "mean-shift", "pca(n_components=10)+latent-arithmetic"],
    condition_key="condition", control="control", context_key="cell_type", n_top=30, progress=False)
selection = pipeline.metadata["selection"]
for row in selection["table"]:                       # ordered by mean loss over the inner units (lower = better)
    print(f"{row['entry']:<42} loss {row['score']:.3f} ± {row['score_se']:.3f} (se)  "
          f"pearson_delta {row['pearson_delta_mean']:.3f}  edistance_ratio {row['edistance_ratio_mean']:.3f}")
print("winner:", selection["winner"], f"(select took {selection['seconds']['work_multiplier']:.0f}x one fit)")
if selection["spread"]["used"]:                      # '<entry>+spread': per-gene spread factors learnt by inner CV
    factors = selection["spread"]["factors"][selection["winner"].removesuffix("+spread")]
    print(f"spread factors: median {factors['median']:.2f}, 10-90% {factors['q10']:.2f}-{factors['q90']:.2f}")

control = adata[((adata.obs.cell_type == "type_0") & (adata.obs.condition == "control")).to_numpy()]
predicted = pipeline.predict(control, target="stimulated")
scores = perturbation_metrics(predicted.X, adata[held_out].X, control.X, list(adata.var_names), n_top=30,
                              reference=train[(train.obs.cell_type != "type_0").to_numpy()].X)
print("held-out type_0:", {k: round(scores[k], 3) for k in ("pearson_delta", "edistance_ratio", "r2_mean_top30",
                                                              "std_ratio_top30")})
pipeline.save("chosen-pipeline", overwrite=True)
