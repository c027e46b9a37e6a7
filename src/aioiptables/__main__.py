"""``python -m aioiptables``: the same command line as the ``aioiptables`` script."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
