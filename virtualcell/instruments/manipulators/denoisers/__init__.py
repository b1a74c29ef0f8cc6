"""Deprecated path: moved to :mod:`virtualcell.nn.denoisers` (this re-export goes away in the next release)."""

import warnings

from ....nn.denoisers import *  # noqa: F401,F403
from ....nn.denoisers import __all__  # noqa: F401

warnings.warn("virtualcell.instruments.manipulators.denoisers moved to virtualcell.nn.denoisers; import it from there.", DeprecationWarning, stacklevel=2)
