"""The `udfd` command line (`udfd.cli.main:main`); subcommand modules register themselves on its parser."""

from udfd.cli.main import main

__all__ = ["main"]
