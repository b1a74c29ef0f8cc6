"""``python -m virtualcell.cli ...``: the same as the ``virtualcell`` command."""

from . import main

if __name__ == "__main__":
    main()
