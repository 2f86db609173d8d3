"""``Store.cancel_run`` reaching a run executing in this process: the journal polls the
flag, the run stops and ends ``cancelled`` (final: resume refuses it)."""

from __future__ import annotations

import asyncio

import pytest

from foreman import Orchestrator
from foreman.errors import RunFinishedError
from foreman.events import RunFinished, TaskStarted
from foreman.models.base import ModelRequest
from foreman.plan.schema import Plan, Task
from foreman.results import RunStatus
from foreman.store import MemoryStore, SQLiteStore, Store
from foreman.testing import ScriptedModel
from foreman.workers import Registry

PLAN = Plan(
    tasks=[
        Task(id="t1", worker="researcher", instructions="do t1"),
        Task(id="t2", worker="researcher", instructions="do t2", depends_on=["t1"]),
        Task(id="t3", worker="writer", instructions="do t3", depends_on=["t2"]),
    ]
)


def slow_t2(request: ModelRequest) -> float:
    return 3600.0 if "do t2" in request.messages[-1].content else 0.0


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_cancel_run_stops_a_running_run_which_ends_cancelled(kind: str, tmp_path) -> None:
    store: Store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "runs.db")
    model = ScriptedModel(lambda request: "done", latency=slow_t2)
    events: list = []
    started = asyncio.Event()

    def on_event(event) -> None:
        events.append(event)
        if isinstance(event, TaskStarted) and event.task_id == "t2":
            started.set()

    async with Orchestrator(
        Registry.default(), model=model, store=store, assembly="concat"
    ) as orchestrator:
        running = asyncio.create_task(orchestrator.run("r", plan=PLAN, on_event=on_event))
        async with asyncio.timeout(30):
            await started.wait()
            run_id = events[0].run_id
            assert await store.cancel_run(run_id) is RunStatus.running
            result = await running

        assert result.status is RunStatus.cancelled
        assert set(result.tasks) == {"t1"} and result.plan == PLAN
        assert result.elapsed > 0  # how long it ran before it was stopped
        assert isinstance(events[-1], RunFinished)
        assert events[-1].result.status is RunStatus.cancelled
        assert (await store.get_run(run_id)).status is RunStatus.cancelled
        assert not any(isinstance(e, TaskStarted) and e.task_id == "t3" for e in events)
        with pytest.raises(RunFinishedError):
            await orchestrator.resume(run_id)
