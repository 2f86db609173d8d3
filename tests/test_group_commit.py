"""Group commit: tasks that settle together are checkpointed in one write, and every
guarantee of a single checkpoint still holds for each task of the group."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import processes
from foreman import Orchestrator
from foreman.errors import StoreError
from foreman.events import Event, RunFinished
from foreman.ledger.records import CallStatus
from foreman.plan.schema import Plan
from foreman.results import RunStatus
from foreman.store import Checkpoint, MemoryStore, SQLiteStore, Store
from foreman.testing import ScriptedModel
from helpers import plan_of, task, worker

TEAM = [worker("researcher")]
SETTLING = ("task_finished", "task_failed", "task_skipped")


def fan_out(size: int, *, then: str | None = None) -> Plan:
    """``size`` independent tasks, and optionally one more depending on all of them."""
    tasks = [task(f"t{i}") for i in range(1, size + 1)]
    if then is not None:
        tasks.append(task(then, "researcher", *(t.id for t in tasks)))
    return plan_of(*tasks)


class Spy:
    """Mixed into a store: every group write (its task ids) once it has committed, and,
    while ``failing``, a StoreError instead of the write of the first group of tasks."""

    failing = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.groups: list[list[str]] = []
        self.committed: set[str] = set()

    async def save_checkpoints(
        self, run_id: str, checkpoints: Sequence[Checkpoint], calls: Sequence[Any] = ()
    ) -> None:
        ids = [checkpoint.result.task_id for checkpoint in checkpoints]
        if self.failing and ids:
            raise StoreError("The run store could not be written: the disk is full.")
        await super().save_checkpoints(run_id, checkpoints, calls)  # type: ignore[misc]
        if ids:
            self.groups.append(ids)
            self.committed.update(ids)


class SpyMemory(Spy, MemoryStore):
    pass


class SpySQLite(Spy, SQLiteStore):
    pass


@pytest.fixture(params=["memory", "sqlite"])
def spy(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A spying store of each kind; each test closes it (in its own event loop)."""
    return SpyMemory() if request.param == "memory" else SpySQLite(tmp_path / "runs.db")


def orchestrator(store: Store) -> Orchestrator:
    """Every ready task starts at once (no concurrency limit) and answers at once."""
    model = ScriptedModel(lambda r: "done")
    return Orchestrator(TEAM, model=model, store=store, assembly="concat", concurrency=None)


async def test_tasks_that_settle_together_are_one_write_and_events_follow_it(spy: Any) -> None:
    early: list[str] = []

    def on_event(event: Event) -> None:
        if event.type in SETTLING and event.task_id not in spy.committed:
            early.append(event.task_id)

    try:
        plan = fan_out(12, then="last")
        result = await orchestrator(spy).run("x", plan=plan, on_event=on_event)
        assert result.status is RunStatus.succeeded
        # Twelve tasks that answer at once settle in one turn of the loop: one write.
        assert sorted(task for group in spy.groups for task in group) == sorted(result.tasks)
        assert len(spy.groups) < len(result.tasks)
        assert max(len(group) for group in spy.groups) == 12
        assert early == []  # no task announced before its group committed
        stored = await spy.load_tasks(result.run_id)
        assert set(stored) == set(result.tasks)
        # The stored log is the emitted one, in order, each event once.
        events = await spy.load_events(result.run_id)
        assert [e["type"] for e in events].count("task_finished") == 13
        assert events[-1]["type"] == "run_finished"
    finally:
        await spy.aclose()


async def test_a_dependant_starts_only_after_its_dependencies_group_committed(
    spy: Any,
) -> None:
    committed_at_start: list[set[str]] = []

    def on_event(event: Event) -> None:
        if event.type == "task_started" and event.task_id == "last":
            committed_at_start.append(set(spy.committed))

    try:
        plan = fan_out(8, then="last")
        await orchestrator(spy).run("x", plan=plan, on_event=on_event)
        assert committed_at_start == [{f"t{i}" for i in range(1, 9)}]
    finally:
        await spy.aclose()


async def test_a_failing_group_write_fails_every_task_in_it_and_announces_none(
    spy: Any,
) -> None:
    spy.failing = True
    events: list[Event] = []
    try:
        with pytest.raises(StoreError, match="disk is full"):
            await orchestrator(spy).run("x", plan=fan_out(6), on_event=events.append)
        assert not [e for e in events if e.type in SETTLING]
        [finished] = [e for e in events if isinstance(e, RunFinished)]
        assert finished.result.status is RunStatus.failed
        run_id = finished.run_id
        assert await spy.load_tasks(run_id) == {}
        assert (await spy.get_run(run_id)).status is RunStatus.failed
        # The calls of the group that could not be written are still on the books.
        calls = await spy.list_calls(run_id=run_id)
        assert len(calls) == 6 and {c.status for c in calls} == {CallStatus.ok}
        run = await spy.get_run(run_id)
        assert run.calls == 6 and run.usage.total_tokens == sum(c.usage.total_tokens for c in calls)
    finally:
        await spy.aclose()


async def test_a_store_with_only_save_task_gets_each_checkpoint_of_a_group(tmp_path: Path) -> None:
    """The default ``save_checkpoints`` of a user's store: one ``save_task`` per task."""

    class OnlySaveTask(MemoryStore):
        saved: list[str] = []

        async def save_task(self, run_id, result, events=(), calls=()):
            self.saved.append(result.task_id)
            await MemoryStore.save_checkpoints(self, run_id, [Checkpoint(result, events)], calls)

        save_checkpoints = Store.save_checkpoints  # the base class's default

    store = OnlySaveTask()
    result = await orchestrator(store).run("x", plan=fan_out(5))
    assert result.status is RunStatus.succeeded
    assert sorted(store.saved) == sorted(result.tasks)
    assert set(await store.load_tasks(result.run_id)) == set(result.tasks)
    assert len(await store.list_calls(run_id=result.run_id)) == 5


# --- kill -9 ---------------------------------------------------------------------------

CHILD = """
import asyncio, sys
from foreman import Orchestrator, Plan, Task, Worker
from foreman.store import SQLiteStore
from foreman.testing import ScriptedModel

QUICK, SLOW = 60, 5

def latency(request):
    n = int(request.messages[-1].content.split('"', 4)[3][1:])
    return 600.0 if n > QUICK else (n % 7) * 0.003

def announce(event):
    if event.type == "task_finished":
        print(event.task_id, flush=True)

async def main():
    store = SQLiteStore(sys.argv[1])
    plan = Plan(tasks=[Task(id=f"t{i}", worker="w", instructions=f"t{i}")
                       for i in range(1, QUICK + SLOW + 1)])
    team = [Worker(name="w", description="A worker.", system_prompt="You work.")]
    model = ScriptedModel(lambda r: "done", latency=latency)
    await Orchestrator(team, model=model, store=store, concurrency=None).run("x", plan=plan,
                                                                          on_event=announce)

asyncio.run(main())
"""


def test_sigkill_while_groups_are_written_loses_no_announced_task(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    child = processes.spawn([sys.executable, "-c", CHILD, str(db)])
    announced = []
    for line in child.lines(timeout=60):
        announced.append(line.strip())
        if len(announced) == 20:  # mid-stream: other groups are being written right now
            break
    child.send_signal(signal.SIGKILL)
    rest, _ = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    announced += rest.split()  # anything announced before the kill, read or not
    assert len(announced) >= 20
    with contextlib.closing(sqlite3.connect(db)) as connection:
        stored = {row[0] for row in connection.execute("SELECT task_id FROM tasks")}
        calls = connection.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    assert set(announced) <= stored
    assert calls >= len(stored)  # every stored task's call is on the books with it
