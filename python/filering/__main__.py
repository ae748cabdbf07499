"""python3 -m filering: the readers of the `filering` command (cat, watch, take, stat, wait)."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
