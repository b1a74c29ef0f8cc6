"""Deprecated: moved to :mod:`virtualcell.pipelines.splits`; this import path is removed in the next release."""

import warnings

from ..pipelines.splits import *  # noqa: F401,F403
from ..pipelines.splits import __all__  # noqa: F401

warnings.warn("virtualcell.evaluate.splits moved to virtualcell.pipelines.splits; import it from there.",
              DeprecationWarning, stacklevel=2)
