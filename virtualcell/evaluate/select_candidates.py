"""Deprecated: moved to :mod:`virtualcell.selection.candidates` (this path is kept for one release)."""

import warnings

from ..selection.candidates import Candidate, parse_candidate, parse_candidates, split_specs, DEFAULT_CANDIDATES, is_auto

__all__ = ["Candidate", "parse_candidate", "parse_candidates", "split_specs", "DEFAULT_CANDIDATES", "is_auto"]

warnings.warn("virtualcell.evaluate.select_candidates moved to virtualcell.selection.candidates; import from there (this path goes "
              "away in the next release).", DeprecationWarning, stacklevel=2)
