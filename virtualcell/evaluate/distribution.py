"""Deprecated: moved to :mod:`virtualcell.metrics.distribution`; this import path is removed in the next release."""

import warnings

from ..metrics.distribution import *  # noqa: F401,F403
from ..metrics.distribution import __all__  # noqa: F401

warnings.warn("virtualcell.evaluate.distribution moved to virtualcell.metrics.distribution (or virtualcell.metrics); "
              "import it from there.", DeprecationWarning, stacklevel=2)
