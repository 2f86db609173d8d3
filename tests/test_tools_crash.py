"""kill -9 at each point of a tool loop, then resume: every side effect happens once.

A real process (tests/tools_crash_driver.py) runs a worker whose tool appends a line to a
file, on a scripted model and a SQLite store, and stops dead at one point of its tool
loop; the test kills it there (SIGKILL) and resumes the run in a new process. A turn the
model answered is never asked again, and a call that finished never runs again. A call
cut short (started, never finished) runs again with the same idempotency key when its
tool is idempotent (the tool deduplicates); otherwise resume asks a person first, and
the run pauses without running it.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import processes
from foreman.store import ApprovalStatus, SQLiteStore

DRIVER = Path(__file__).with_name("tools_crash_driver.py")


def driver(tmp_path: Path, *args: str) -> list[str]:
    return [sys.executable, str(DRIVER), str(tmp_path / "runs.db"), str(tmp_path), *args]


def killed_at(tmp_path: Path, point: str, *flags: str) -> str:
    """Start the run, wait until it reports it stopped at ``point``, SIGKILL it."""
    process = processes.spawn(driver(tmp_path, point, *flags))
    run_id = None
    for line in process.lines(timeout=60):
        if line.startswith("RUN "):
            run_id = line.split()[1]
        if line.strip() == f"POINT {point}":
            break
    else:
        pytest.fail(f"the run never reached {point}: {process.stderr()}")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert run_id is not None
    return run_id


def resumed(tmp_path: Path, run_id: str, *flags: str) -> str:
    """Resume in a new process; the run's status."""
    done = processes.run(driver(tmp_path, "none", *flags, "--resume", run_id), timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1].removeprefix("RESULT ")


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def stored(db: Path, run_id: str) -> tuple[list, list, list]:
    """The run's tool calls, approvals and model-call ledger, as the store keeps them."""
    store = SQLiteStore(db)
    try:
        return (
            await store.list_tool_calls(run_id=run_id),
            await store.list_approvals(None),
            await store.list_calls(run_id=run_id),
        )
    finally:
        await store.aclose()


CASES = [
    ("turn_stored", False),
    ("call_started", True),
    ("in_tool", True),
    ("call_finished", False),
    ("task_checkpoint", False),
]


@pytest.mark.parametrize(("point", "idempotent"), CASES)
def test_a_kill_at_each_point_repeats_no_side_effect(
    tmp_path: Path, point: str, idempotent: bool
) -> None:
    flags = ("--idempotent",) if idempotent else ()
    run_id = killed_at(tmp_path, point, *flags)

    assert resumed(tmp_path, run_id, *flags) == "succeeded"

    a, b = f"{run_id}:t1:1 a", f"{run_id}:t1:2 b"
    assert lines(tmp_path / "out.txt") == [a, b]  # each side effect exactly once
    assert lines(tmp_path / "model.log") == ["turn 0", "turn 1", "turn 2"]  # none asked twice
    ran = lines(tmp_path / "tool.log")
    # Cut short inside the tool: run again, with the same key, and deduplicated by it.
    assert ran == ([a, a, b] if point == "in_tool" else [a, b])
    calls, _, ledger = asyncio.run(stored(tmp_path / "runs.db", run_id))
    assert [(c.seq, c.tool, c.outcome.value) for c in calls] == [
        (1, "append_line", "ok"),
        (2, "append_line", "ok"),
    ]
    # Each turn on the books once, with what it cost: stored with the turn, before the kill.
    assert [(c.purpose.value, c.status.value, c.estimated) for c in ledger] == [
        ("task", "ok", False)
    ] * 3


@pytest.mark.parametrize("point", ["call_started", "in_tool"])
def test_a_call_cut_short_of_a_tool_not_idempotent_asks_a_person(
    tmp_path: Path, point: str
) -> None:
    run_id = killed_at(tmp_path, point)
    before = lines(tmp_path / "out.txt")

    assert resumed(tmp_path, run_id) == "waiting_approval"

    assert lines(tmp_path / "out.txt") == before  # not repeated silently
    assert lines(tmp_path / "model.log") == ["turn 0"]
    _, approvals, _ = asyncio.run(stored(tmp_path / "runs.db", run_id))
    assert [(a.task_id, a.tool, a.may_have_run, a.status) for a in approvals] == [
        ("t1#1", "append_line", True, ApprovalStatus.pending)
    ]

    db = str(tmp_path / "runs.db")
    rejected = subprocess.run(
        [
            sys.executable,
            "-m",
            "foreman",
            "reject",
            run_id,
            "t1#1",
            "--reason",
            "ran already",
            "--db",
            db,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rejected.returncode == 0, rejected.stderr
    assert resumed(tmp_path, run_id) == "succeeded"

    assert lines(tmp_path / "out.txt") == [*before, f"{run_id}:t1:2 b"]
    calls, _, _ = asyncio.run(stored(tmp_path / "runs.db", run_id))
    assert [(c.seq, c.outcome.value) for c in calls] == [(1, "rejected"), (2, "ok")]
    assert calls[0].result.startswith("rejected by the approver: ran already")


def test_an_approved_high_risk_call_cut_short_is_asked_about_again(tmp_path: Path) -> None:
    run_id = killed_at(tmp_path, "in_tool", "--high")  # approved by the first process

    assert resumed(tmp_path, run_id, "--high") == "waiting_approval"

    assert lines(tmp_path / "out.txt") == [f"{run_id}:t1:1 a"]  # not run a second time
    _, approvals, _ = asyncio.run(stored(tmp_path / "runs.db", run_id))
    assert [(a.task_id, a.may_have_run, a.status) for a in approvals] == [
        ("t1#1", True, ApprovalStatus.pending)
    ]
