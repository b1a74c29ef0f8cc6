"""``python -m virtualcell ...``: the same as the ``virtualcell`` command."""

from .cli import main

if __name__ == "__main__":
    main()
