"""Deprecated: moved to :mod:`virtualcell.selection.spread` (this path is kept for one release)."""

import warnings

from ..selection.spread import SUFFIX, MAX_FACTOR, spread_factors, apply_spread, spread_entries, with_spread, spread_summary

__all__ = ["SUFFIX", "MAX_FACTOR", "spread_factors", "apply_spread", "spread_entries", "with_spread", "spread_summary"]

warnings.warn("virtualcell.evaluate.select_spread moved to virtualcell.selection.spread; import from there (this path goes "
              "away in the next release).", DeprecationWarning, stacklevel=2)
