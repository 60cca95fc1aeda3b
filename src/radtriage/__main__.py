"""``python -m radtriage ...``: the command line (see :mod:`radtriage.cli`)."""

import sys

from radtriage.cli import main

if __name__ == "__main__":
    sys.exit(main())
