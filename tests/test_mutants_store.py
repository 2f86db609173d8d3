"""Store behaviour that seeded bugs (mutation testing, issue 6) changed without a test failing:
a stored task result or plan is a copy of the caller's, and a deleted run leaves no cancel request
behind. Run against every store, like the conformance suite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from foreman.engine.results import TaskResult, TaskStatus
from foreman.plan.schema import Plan, Task
from foreman.store import MemoryStore, RunRecord, SQLiteStore, Store


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    implementation = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "r.db")
    yield implementation
    await implementation.aclose()


async def test_a_saved_task_result_does_not_change_with_the_callers_object(store: Store) -> None:
    await store.create_run(RunRecord(run_id="r1", request="x"))
    result = TaskResult(
        task_id="t1", worker="researcher", status=TaskStatus.succeeded, output={"items": [1]}
    )
    await store.save_task("r1", result)
    result.output["items"].append(2)
    assert (await store.load_tasks("r1"))["t1"].output == {"items": [1]}


async def test_a_deleted_run_leaves_no_cancel_request(store: Store) -> None:
    await store.create_run(RunRecord(run_id="r1", request="x"))
    await store.cancel_run("r1")
    await store.delete_run("r1", force=True)
    assert await store.cancel_requested("r1") is False


async def test_a_saved_plan_does_not_change_with_the_callers_object(store: Store) -> None:
    await store.create_run(RunRecord(run_id="r1", request="x"))
    plan = Plan(tasks=[Task(id="t1", worker="researcher", instructions="do t1")])
    await store.save_plan("r1", plan)
    plan.tasks[0].instructions = "changed"
    assert (await store.get_run("r1")).plan.tasks[0].instructions == "do t1"
