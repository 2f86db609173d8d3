"""The command-line interface (``foreman --help``)."""

from foreman.cli.app import app, main

__all__ = ["app", "main"]
