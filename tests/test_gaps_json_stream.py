"""`foreman run --json` into a pipe: each event line arrives as it happens.

A pipe makes Python's stdout block-buffered, so an unflushed line would sit in the buffer
until the process ends. The run here has a task that takes a minute; the first event lines
must be readable long before that. Reads never block without a deadline, and the child is
killed whatever happens.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

LAUNCHER = Path(__file__).with_name("scripted_cli.py")
DEADLINE = 30.0  # seconds to see the lines; the slow task takes 600


def read_lines(process: subprocess.Popen[bytes], wanted: int, deadline: float) -> list[str]:
    """The first ``wanted`` complete lines of the child's stdout, or fail at ``deadline``."""
    assert process.stdout is not None
    fd, buffer = process.stdout.fileno(), b""
    while buffer.count(b"\n") < wanted:
        left = deadline - time.monotonic()
        assert left > 0, f"no {wanted} lines within the deadline; got {buffer!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            assert chunk, f"stdout closed after {buffer!r}; exit {process.wait(5)}"
            buffer += chunk
    return buffer.decode().splitlines()[:wanted]


def test_json_event_lines_are_flushed_into_a_pipe(tmp_path: Path) -> None:
    plan = {"tasks": [{"id": "t1", "worker": "researcher", "instructions": "do t1"}]}
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps({"plan": plan, "latency": {"do t1": 600}, "log": str(tmp_path / "calls.log")})
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    process = subprocess.Popen(
        [sys.executable, str(LAUNCHER), str(spec), "run", "x", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env={**env, "FOREMAN_DB": str(tmp_path / "runs.db")},
        start_new_session=True,
    )
    try:
        lines = read_lines(process, 2, time.monotonic() + DEADLINE)
        assert process.poll() is None  # still running: the lines came before the end
        events = [json.loads(line) for line in lines]
        assert [e["type"] for e in events] == ["run_started", "plan_ready"]
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
