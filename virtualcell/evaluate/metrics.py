"""Deprecated: moved to :mod:`virtualcell.metrics.perturbation`; this import path is removed in the next release."""

import warnings

from ..metrics.perturbation import *  # noqa: F401,F403
from ..metrics.perturbation import __all__  # noqa: F401

warnings.warn("virtualcell.evaluate.metrics moved to virtualcell.metrics.perturbation (or virtualcell.metrics); "
              "import it from there.", DeprecationWarning, stacklevel=2)
