"""Deprecated path: moved to :mod:`virtualcell.nn.layers` (this re-export goes away in the next release)."""

import warnings

from ....nn.layers import *  # noqa: F401,F403
from ....nn.layers import __all__  # noqa: F401

warnings.warn("virtualcell.instruments.manipulators.layers moved to virtualcell.nn.layers; import it from there.", DeprecationWarning, stacklevel=2)
