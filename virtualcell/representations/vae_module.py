"""Deprecated path: moved to :mod:`virtualcell.nn.vae_module` (this re-export goes away in the next release)."""

import warnings

from ..nn.vae_module import *  # noqa: F401,F403
from ..nn.vae_module import __all__  # noqa: F401

warnings.warn("virtualcell.representations.vae_module moved to virtualcell.nn.vae_module; import it from there.", DeprecationWarning, stacklevel=2)
