"""The command-line interface (``foreman --help``)."""

# isort: off  (run, plan, workers register first, so --help lists them first)
from foreman.cli.app import app, main
from foreman.cli import approvals, history  # noqa: F401 - they register their commands
# isort: on

__all__ = ["app", "main"]
