"""Deprecated: moved to :mod:`virtualcell.metrics.discrimination`; this import path is removed in the next release."""

import warnings

from ..metrics.discrimination import *  # noqa: F401,F403
from ..metrics.discrimination import __all__  # noqa: F401

warnings.warn("virtualcell.evaluate.discrimination moved to virtualcell.metrics.discrimination (or virtualcell.metrics); "
              "import it from there.", DeprecationWarning, stacklevel=2)
