"""Deprecated: moved to :mod:`virtualcell.metrics.ceiling`; this import path is removed in the next release."""

import warnings

from ..metrics.ceiling import *  # noqa: F401,F403
from ..metrics.ceiling import __all__  # noqa: F401

warnings.warn("virtualcell.evaluate.scoring moved to virtualcell.metrics.ceiling (or virtualcell.metrics); "
              "import it from there.", DeprecationWarning, stacklevel=2)
