"""``python -m aioiptables``: the same command line as the ``aioiptables`` script."""

import sys

if __name__ == "__main__":
    try:
        from .cli import main
    except KeyboardInterrupt:  # Ctrl-C while Python was still loading the command line
        print("aioiptables: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(main())
