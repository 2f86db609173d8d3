"""The SQLite store shared by real processes: a new file opened by many of them at once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from foreman.store import SQLiteStore

SRC = str(Path(__file__).resolve().parents[1] / "src")

# Imports foreman, says it is ready, waits for the go file, then opens the store and writes.
OPENER = textwrap.dedent(
    """
    import asyncio, os, sys, time
    from foreman.store import RunRecord, SQLiteStore

    db, ready, go, run_id = sys.argv[1:]
    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.001)

    async def main():
        store = SQLiteStore(db)
        try:
            await store.create_run(RunRecord(run_id=run_id, request="r"))
        finally:
            await store.aclose()

    asyncio.run(main())
    """
)


def python(*args: str, **kwargs) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.mark.parametrize("trial", range(6))
def test_many_processes_opening_a_new_database_at_once_all_succeed(
    tmp_path: Path, trial: int
) -> None:
    db, go = tmp_path / "new.db", tmp_path / "go"
    processes = []
    try:
        for n in range(8):
            processes.append(
                python("-c", OPENER, str(db), str(tmp_path / f"ready{n}"), str(go), f"run-{n}")
            )
        wait_for(lambda: all((tmp_path / f"ready{n}").exists() for n in range(8)), "ready")
        go.touch()  # every process opens the new file at the same moment
        outcomes = [p.communicate(timeout=60) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()

    failures = [err for p, (_, err) in zip(processes, outcomes, strict=True) if p.returncode]
    assert failures == []

    async def listed() -> set[str]:
        store = SQLiteStore(db)
        try:
            return {run.run_id for run in await store.list_runs()}
        finally:
            await store.aclose()

    assert asyncio.run(listed()) == {f"run-{n}" for n in range(8)}
