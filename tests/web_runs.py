"""Runs for the dashboard tests: the real ``foreman`` CLI in its own process, on a scripted
model (tests/scripted_cli.py), writing to one store the dashboard reads.

``INJECTION`` is what a hostile model or user might write: markup that would run script if
it were ever rendered as HTML. ``window.__pwned`` stays unset unless it did.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import processes

LAUNCHER = Path(__file__).with_name("scripted_cli.py")
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


def plan(*tasks: tuple[str, str, list[str]]) -> dict:
    return {
        "tasks": [
            {"id": i, "worker": w, "instructions": f"do {i}", "depends_on": d} for i, w, d in tasks
        ]
    }


class Runs:
    """``foreman`` commands against one store, each in a fresh process."""

    def __init__(self, tmp_path: Path, spec: dict) -> None:
        self.db = tmp_path / "runs.db"
        self.team = tmp_path / "team.yaml"
        self.team.write_text(TEAM)
        self.spec = tmp_path / "spec.json"
        self.spec.write_text(json.dumps({**spec, "log": str(tmp_path / "calls.log")}))

    def command(self, *args: str) -> list[str]:
        return [sys.executable, str(LAUNCHER), str(self.spec), *args, "--db", str(self.db)]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A command to its end (a run's exit code says how it ended)."""
        return subprocess.run(
            self.command(*args),
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            env=dict(os.environ),
        )

    def start(self, *args: str) -> processes.Child:
        """A command left running (a slow run to watch)."""
        return processes.spawn(self.command(*args))

    def team_args(self) -> list[str]:
        return ["--team", str(self.team)]
