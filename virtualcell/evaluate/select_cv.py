"""Deprecated: moved to :mod:`virtualcell.selection.folds` (this path is kept for one release)."""

import warnings

from ..selection.cv import fit_candidate
from ..selection.folds import Fold, Unit, context_folds, replicate_folds, subsample_groups

__all__ = ["Unit", "Fold", "context_folds", "replicate_folds", "subsample_groups", "fit_candidate"]

warnings.warn("virtualcell.evaluate.select_cv moved to virtualcell.selection.folds and .cv; import from there (this path goes "
              "away in the next release).", DeprecationWarning, stacklevel=2)
