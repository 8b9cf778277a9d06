"""`python -m udfd ...` is the same as the `udfd` command."""

import sys

from udfd.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
