"""A DAG that grows while it runs: tasks added, changed and dropped mid-run (replanning,
one task per item), never touching settled or running ones."""

from __future__ import annotations

import asyncio

import pytest

from foreman import TaskResult, TaskStatus
from foreman.engine.scheduler import DagRun
from foreman.plan import Task
from helpers import task


def result(t: Task, status: TaskStatus = TaskStatus.succeeded) -> TaskResult:
    return TaskResult(task_id=t.id, worker=t.worker, status=status, output=t.instructions)


async def test_tasks_added_while_others_run_start_at_once_and_the_run_waits_for_them() -> None:
    release_slow, new_done = asyncio.Event(), asyncio.Event()
    order: list[str] = []
    dag: DagRun

    async def execute(t: Task, inputs: dict[str, TaskResult]) -> TaskResult:
        order.append(f"start {t.id}")
        if t.id == "slow":
            await release_slow.wait()
        if t.id == "fast":  # its report adds work that needs it, while slow still runs
            dag.add([task("new", "writer", "fast"), task("after", "writer", "new", "slow")])
        order.append(f"end {t.id}")
        if t.id == "new":
            new_done.set()
        return result(t)

    dag = DagRun([task("fast"), task("slow")], execute)
    waiting = asyncio.create_task(dag.wait())
    await asyncio.wait_for(new_done.wait(), 5)
    assert dag.state("slow") == "running"
    assert "start after" not in order  # it needs slow too
    release_slow.set()
    results = await waiting

    assert set(results) == {"fast", "slow", "new", "after"}
    assert order.index("end slow") < order.index("start after")


async def test_pending_tasks_can_be_changed_or_dropped_but_not_running_or_settled_ones() -> None:
    gate = asyncio.Event()
    seen: dict[str, str] = {}

    async def execute(t: Task, inputs: dict[str, TaskResult]) -> TaskResult:
        seen[t.id] = t.instructions
        if t.id == "first":
            await gate.wait()
        return result(t)

    dag = DagRun(
        [task("first"), task("second", "writer", "first"), task("third", "writer", "second")],
        execute,
    )
    waiting = asyncio.create_task(dag.wait())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="running"):
        dag.change(task("first", instructions="other"))
    with pytest.raises(ValueError, match="depend on it"):
        dag.drop(["second"])  # third still needs it
    dag.change(task("second", "writer", "first", instructions="revised second"))
    dag.drop(["third"])
    gate.set()
    results = await waiting

    assert set(results) == {"first", "second"}
    assert seen["second"] == "revised second"
    with pytest.raises(ValueError, match="settled"):
        dag.drop(["first"])


async def test_a_hold_keeps_the_run_open_until_the_revision_is_decided() -> None:
    async def execute(t: Task, inputs: dict[str, TaskResult]) -> TaskResult:
        return result(t)

    dag = DagRun([task("only")], execute)
    with dag.hold():
        waiting = asyncio.create_task(dag.wait())
        for _ in range(5):
            await asyncio.sleep(0)
        assert dag.state("only") == "settled" and not waiting.done()
        dag.add([task("follow_up", "writer", "only")])
    assert set(await waiting) == {"only", "follow_up"}


async def test_added_tasks_downstream_of_a_waiting_task_are_held_too() -> None:
    async def execute(t: Task, inputs: dict[str, TaskResult]) -> TaskResult:
        return result(t, TaskStatus.waiting if t.id == "risky" else TaskStatus.succeeded)

    dag = DagRun([task("risky"), task("free")], execute)
    with dag.hold():
        waiting = asyncio.create_task(dag.wait())
        for _ in range(5):
            await asyncio.sleep(0)
        dag.add([task("needs_risky", "writer", "risky", "free")])
    results = await waiting

    assert dag.state("needs_risky") == "held"
    assert set(results) == {"risky", "free"}


async def test_unknown_inputs_and_duplicate_ids_are_refused() -> None:
    async def execute(t: Task, inputs: dict[str, TaskResult]) -> TaskResult:
        return result(t)

    dag = DagRun([task("a")], execute)
    with pytest.raises(ValueError, match="unknown"):
        dag.add([task("b", "writer", "nowhere")])
    with pytest.raises(ValueError, match="already"):
        dag.add([task("a")])
    assert set(await dag.wait()) == {"a"}
