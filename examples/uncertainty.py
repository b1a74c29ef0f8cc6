"""Counterfactual cells with uncertainty, two ways (docs/uncertainty.md):

1. conformal intervals of each gene's predicted mean for an unseen cell type, calibrated on the
   training cell types by leaving each out in turn (any pipeline; saved with it in pipeline.json);
2. the diffusion manipulator's sampled populations: the spread of their means, and how often it holds.

Runs in about a minute on 2 CPU cores (simulated data, a small denoiser); writes coverage.png.
"""

import numpy as np

import virtualcell as vc
from virtualcell.datasets import simulate_perturbation
from virtualcell.evaluate.plots import coverage_curves
from virtualcell.metrics import top_degs
from virtualcell.metrics.calibration import calibration_report, population_samples
from virtualcell.pipelines.intervals import attach_calibration, predict_interval
from virtualcell.selection.conformal import calibrate_pipeline

adata = simulate_perturbation(n_cells_per_group=100, n_genes=100, n_cell_types=5, seed=0)
genes = list(adata.var_names)
held_out = (adata.obs.cell_type == "type_0") & (adata.obs.condition == "stimulated")
train = adata[~held_out].copy()
control = adata[(adata.obs.cell_type == "type_0") & (adata.obs.condition == "control")]
real = adata[held_out].X
degs = top_degs(real, control.X, genes, n=30)


# 1. conformal intervals: 4 training cell types -> 4 inner fits, then one fit on all of them
def fit(cells):
    return vc.PerturbationPipeline(encoder={"name": "pca", "n_components": 20}, manipulator="latent-arithmetic").fit(
        cells, condition_key="condition", control="control", context_key="cell_type", seed=0, progress=False)


calibration = calibrate_pipeline(fit, train, context_key="cell_type", n_top=30)
pipeline = attach_calibration(fit(train), calibration)
table = predict_interval(pipeline, control, target="stimulated", levels=(0.8, 0.9, 0.95))
truth = np.asarray(real.mean(axis=0)).ravel()
inside = (truth >= table["lo_90"].to_numpy()) & (truth <= table["hi_90"].to_numpy())
on_degs = np.isin(table.index, degs)
print(f"conformal 90% interval of the mean holds the real mean for {inside[on_degs].mean():.0%} of the top-30 DEGs "
      f"(K={calibration.n_units} inner cell types, mean width {(table['hi_90'] - table['lo_90'])[on_degs].mean():.2f})")

# 2. the diffusion manipulator: X is the predictive mean of 20 sampled populations; layers the spread
diffusion = vc.PerturbationPipeline(
    encoder={"name": "pca", "n_components": 20},
    manipulator={"name": "diffusion", "hidden": 64, "max_epochs": 80, "num_inference_steps": 25,
                 "sampling_progress": False})
diffusion.fit(train, condition_key="condition", control="control", context_key="cell_type", seed=0, progress=False)
predicted = diffusion.predict(control, target="stimulated", n_samples=20, seed=0)
print("layers:", sorted(predicted.layers), "| mean per-cell interval width:",
      round(float(np.mean(predicted.layers["q95"] - predicted.layers["q05"])), 3))
samples = population_samples(diffusion, control, target="stimulated", n_samples=20, seed=1)   # [20, cells, genes]
report = calibration_report(samples, real, genes, degs)
print(f"sampled 90% interval holds the real mean for {report['coverage']:.0%} of the top-30 DEGs "
      f"(mean width {report['mean_width']:.2f}, mean error {report['mean_abs_error']:.2f})")
coverage_curves({"type_0": {float(level): value for level, value in report["curve"].items()}}, path="coverage.png",
                title="unseen type_0: coverage of the sampled interval of the mean")
