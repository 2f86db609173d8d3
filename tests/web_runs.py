"""Runs for the dashboard tests: the real ``foreman`` CLI in its own process, on a scripted
model (tests/scripted_cli.py), writing to one store the dashboard reads.

``INJECTION`` is what a hostile model or user might write: markup that would run script if
it were ever rendered as HTML. ``window.__pwned`` stays unset unless it did.
"""

from __future__ import annotations

from pathlib import Path

import processes
from cli_runs import ScriptedCli

INJECTION = (
    "<script>window.__pwned='script'</script><img src=x onerror=window.__pwned='img'><b>bold?</b>"
)
TEAM = """\
include_defaults: true
workers:
  - name: deployer
    description: Deploys to production.
    system_prompt: You deploy.
    risk: high
    retry: {max_attempts: 1}
"""


class Runs(ScriptedCli):
    """``foreman`` commands against one store, each in a fresh process; ``team`` has a
    high-risk ``deployer`` for approvals."""

    def __init__(self, tmp_path: Path, spec: dict) -> None:
        super().__init__(tmp_path, spec)
        self.team = tmp_path / "team.yaml"
        self.team.write_text(TEAM)

    def start(self, *args: str) -> processes.Child:
        """A command left running (a slow run to watch)."""
        return processes.spawn(self.command(*args))

    def team_args(self) -> list[str]:
        return ["--team", str(self.team)]
