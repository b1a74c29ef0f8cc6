"""The metrics of docs/evaluation.md (v2), for scoring a predicted perturbation against real cells.

- :func:`score_prediction` (:mod:`.score`): THE scoring function every caller uses, a prediction
  against one held-out unit's :class:`HeldOutTruth` (built by :func:`held_out_truth`);
- :mod:`.perturbation`: ``perturbation_metrics``, ``top_degs`` and the single metrics;
- :mod:`.distribution`: energy distance, MMD and the out-of-sample PCA space;
- :mod:`.discrimination`: PERT's discrimination; :mod:`.calibration`: interval coverage;
- :mod:`.ceiling`: the noise-ceiling row and the sampled-interval rows of a benchmark;
- :mod:`.inputs`: validation of the [cells, genes] matrices.

Names are imported on first use so that ``import virtualcell.metrics`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "score": ("HeldOutTruth", "held_out_truth", "score_prediction"),
    "perturbation": ("perturbation_metrics", "top_degs", "pearson", "r2_mean", "r2_var", "pearson_delta", "de_overlap",
                     "edistance_ratio", "std_ratio", "gene_correlation_similarity"),
    "distribution": ("PCASpace", "fit_pca_space", "energy_distance", "mmd2", "distribution_ratios", "MAX_CELLS"),
    "discrimination": ("discrimination",),
    "calibration": ("mean_interval", "interval_coverage", "coverage_curve", "population_samples", "calibration_report"),
    "ceiling": ("noise_ceiling", "split_halves", "sampled_calibration", "pipeline_calibration", "NOISE_CEILING"),
}
_HOME = {name: module for module, names in _LAZY.items() for name in names}
__all__ = sorted(_HOME)

# The one name that is both a module and its function: bind the function now (numpy only), so that
# ``from virtualcell.metrics import discrimination`` is the function whether or not the module was imported.
from .discrimination import discrimination  # noqa: E402


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    if name in _LAZY or name == "inputs":
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'virtualcell.metrics' has no attribute {name!r}")
