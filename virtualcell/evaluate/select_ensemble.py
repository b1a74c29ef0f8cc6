"""Deprecated: the ensemble moved to :mod:`virtualcell.pipelines.ensemble`, its weights to
:mod:`virtualcell.selection.stacking` (this path is kept for one release)."""

import warnings

from ..pipelines.ensemble import EnsemblePipeline
from ..selection.stacking import ensemble_view, leave_fold_out_ensemble, stacking_weights

__all__ = ["EnsemblePipeline", "stacking_weights", "leave_fold_out_ensemble", "ensemble_view"]

warnings.warn("virtualcell.evaluate.select_ensemble moved to virtualcell.pipelines.ensemble (EnsemblePipeline) and "
              "virtualcell.selection.stacking; import from there (this path goes away in the next release).",
              DeprecationWarning, stacklevel=2)
