"""Deprecated: moved to :mod:`virtualcell.selection.auto` (this path is kept for one release)."""

import warnings

from ..selection.auto import AUTO_OPTIONS, auto_method, fit_auto_method, fit_auto

__all__ = ["AUTO_OPTIONS", "auto_method", "fit_auto_method", "fit_auto"]

warnings.warn("virtualcell.evaluate.select_auto moved to virtualcell.selection.auto; import from there (this path goes "
              "away in the next release).", DeprecationWarning, stacklevel=2)
