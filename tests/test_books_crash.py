"""A call in flight when its process dies (kill -9) or is stopped (Ctrl-C) stays on the books.

A real child process runs a two-provider orchestration on a SQLite store against the billing
fake providers of this test process; t2's call is held by the fake, and the child is killed
(or sent SIGINT) once that call's ``started`` row is stored. The row must read
``interrupted``, its input tokens estimated and flagged, and the run's books after resume
must be everything the providers billed plus that estimate: never silently low.

Run as a script, this module is the child: ``python test_books_crash.py DB A_URL B_URL``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

import foreman
import processes
from books_audit import (
    audit,
    models_closed,
    orchestrator,
    plan_answer,
    same_books,
    serve,
)
from fake_provider import HANG, FakeProvider, WireScript
from foreman.events import Event, RunStarted
from foreman.ledger.records import CallStatus
from foreman.results import RunStatus
from foreman.store import SQLiteStore
from helpers import plan_of, task

PLAN = plan_of(task("t1"), task("t2", "researcher", "t1"))


def child(db: str, anthropic_url: str, openai_url: str) -> None:
    """Run the plan's request on the fakes, printing the run id as the run starts."""

    def on_event(event: Event) -> None:
        if isinstance(event, RunStarted):
            print(event.run_id, flush=True)

    async def main() -> None:
        orch = orchestrator((anthropic_url, openai_url), SQLiteStore(db))
        async with orch:
            await orch.run("two tasks", on_event=on_event)

    asyncio.run(main())


pytestmark = pytest.mark.usefixtures("provider_env")


async def stored_call_of(store: SQLiteStore, run_id: str, task_id: str) -> None:
    """Wait (30 s at most) until a call of ``task_id`` is in the store."""
    for _ in range(3000):
        if await store.list_calls(run_id=run_id, task_id=task_id):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no call of {task_id} was stored")


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
async def test_a_call_in_flight_when_the_process_stops_is_counted_after_resume(
    fakes: tuple[FakeProvider, FakeProvider], tmp_path: Path, stop: signal.Signals
) -> None:
    serve(fakes, WireScript(plan=[plan_answer(PLAN)], tasks={"do t2": [HANG, "found t2"]}))
    db = tmp_path / "runs.db"
    src = str(Path(foreman.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": src}
    running = processes.spawn(
        [sys.executable, __file__, str(db), fakes[0].url, fakes[1].url], env=env
    )
    run_id = (running.readline(timeout=60) or "").strip()
    store = SQLiteStore(db)
    try:
        await stored_call_of(store, run_id, "t2")
        processes.wait_until(lambda: len(fakes[1].requests) == 2, timeout=30, what="t2's call")
        running.send_signal(stop)
        running.wait(timeout=60)

        record = await store.get_run(run_id)
        expected = RunStatus.crashed if stop is signal.SIGKILL else RunStatus.interrupted
        assert record.status is expected
        rows = await audit(store, run_id, fakes, estimated=1)
        [cut] = [row for row in rows if row.estimated]
        assert (cut.task_id, cut.status) == ("t2", CallStatus.interrupted)
        assert cut.usage.input_tokens > 0 and cut.cost_usd

        async with models_closed(orchestrator(fakes, store)) as orch:
            resumed = await orch.resume(run_id)
    finally:
        await store.aclose()

    assert resumed.status is RunStatus.succeeded
    store = SQLiteStore(db)
    try:
        rows = await audit(store, run_id, fakes, estimated=1)
    finally:
        await store.aclose()
    assert [row.status for row in rows if row.task_id == "t2"] == [
        CallStatus.interrupted,
        CallStatus.ok,
    ]
    assert [row.attempt for row in rows if row.task_id == "t2"] == [1, 2]
    same_books(resumed, rows)


if __name__ == "__main__":
    child(*sys.argv[1:4])
