"""Deprecated path: moved to :mod:`virtualcell.nn.group_means` (this re-export goes away in the next release)."""

import warnings

from ...nn.group_means import *  # noqa: F401,F403
from ...nn.group_means import __all__  # noqa: F401

warnings.warn("virtualcell.instruments.manipulators.group_means moved to virtualcell.nn.group_means; import it from there.", DeprecationWarning, stacklevel=2)
