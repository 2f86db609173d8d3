"""The real ``foreman`` CLI in fresh processes on a scripted model (tests/scripted_cli.py),
all against one store: what the durable, lifecycle and dashboard tests drive."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

LAUNCHER = Path(__file__).with_name("scripted_cli.py")


def plan(*tasks: tuple[str, str, list[str]]) -> dict:
    """A plan's JSON from (id, worker, dependencies) triples; a task's instructions are
    ``do <id>``, which the scripted model answers and logs."""
    return {
        "tasks": [
            {"id": i, "worker": w, "instructions": f"do {i}", "depends_on": d} for i, w, d in tasks
        ]
    }


class ScriptedCli:
    """``foreman`` subcommands, each in a fresh process, on one database and spec; the
    scripted model logs each task it answers to ``log`` (``calls`` counts them)."""

    def __init__(self, tmp_path: Path, spec: dict) -> None:
        self.tmp = tmp_path
        self.db = tmp_path / "runs.db"
        self.log = tmp_path / "calls.log"
        self.spec_path = tmp_path / "spec.json"
        self.set_spec(spec)

    def set_spec(self, spec: dict) -> None:
        self.spec_path.write_text(json.dumps({**spec, "log": str(self.log)}))

    def command(self, *args: str) -> list[str]:
        return [sys.executable, str(LAUNCHER), str(self.spec_path), *args, "--db", str(self.db)]

    def run(self, *args: str, columns: int = 200) -> subprocess.CompletedProcess[str]:
        """A command to its end (a run's exit code says how it ended)."""
        return subprocess.run(
            self.command(*args),
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "COLUMNS": str(columns)},
        )

    def calls(self) -> Counter[str]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return Counter(line.removeprefix("do ") for line in lines)
