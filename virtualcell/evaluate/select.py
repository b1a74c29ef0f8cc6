"""Deprecated: moved to :mod:`virtualcell.selection` (``virtualcell.select``); this path is kept for one release."""

import warnings

from ..selection import ENSEMBLE, SELECTION_METRICS, Selection, is_auto, load_selected, rank_entries, select_pipeline

__all__ = ["select_pipeline", "Selection", "SELECTION_METRICS", "rank_entries", "ENSEMBLE", "is_auto", "load_selected"]

warnings.warn("virtualcell.evaluate.select moved to virtualcell.selection (and PerturbationPipeline.select to "
              "virtualcell.select); import from there (this path goes away in the next release).",
              DeprecationWarning, stacklevel=2)
