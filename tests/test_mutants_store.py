"""Store behaviour that seeded bugs (mutation testing, issue 6) changed without a test failing:
a stored task result or plan is a copy of the caller's, and a deleted run leaves no cancel request
behind (run against every store, like the conformance suite); the default database path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from foreman.plan.schema import Plan, Task
from foreman.results import TaskResult, TaskStatus
from foreman.store import MemoryStore, RunRecord, SQLiteStore, Store
from foreman.store.sqlite import default_db_path


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


def test_the_default_database_follows_xdg_then_the_home_directory(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("FOREMAN_DB", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_db_path() == tmp_path / ".local" / "share" / "foreman" / "foreman.db"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_db_path() == tmp_path / "data" / "foreman" / "foreman.db"
    monkeypatch.setenv("FOREMAN_DB", str(tmp_path / "mine.db"))
    assert default_db_path() == tmp_path / "mine.db"
