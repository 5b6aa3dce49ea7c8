"""The `deploystudio` command line: one module per command group, over the domain package."""

from deploystudio.cli.main import EXIT_USER_ERROR, main

__all__ = ["EXIT_USER_ERROR", "main"]
