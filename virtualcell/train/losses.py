"""Deprecated path: moved to :mod:`virtualcell.nn.losses` (this re-export goes away in the next release)."""

import warnings

from ..nn.losses import *  # noqa: F401,F403
from ..nn.losses import __all__  # noqa: F401

warnings.warn("virtualcell.train.losses moved to virtualcell.nn.losses; import it from there.", DeprecationWarning, stacklevel=2)
