"""``python -m explorer``: the same as the ``nips-explorer`` command."""

import sys

from explorer.cli import main

if __name__ == "__main__":
    sys.exit(main())
