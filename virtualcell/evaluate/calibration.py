"""Deprecated: moved to :mod:`virtualcell.metrics.calibration`; this import path is removed in the next release."""

import warnings

from ..metrics.calibration import *  # noqa: F401,F403
from ..metrics.calibration import __all__  # noqa: F401

warnings.warn("virtualcell.evaluate.calibration moved to virtualcell.metrics.calibration (or virtualcell.metrics); "
              "import it from there.", DeprecationWarning, stacklevel=2)
