"""``python -m virtualcell.cli ...``: the same as the ``virtualcell`` command."""

from . import main

main()
