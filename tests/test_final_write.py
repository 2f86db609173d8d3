"""The run's last write (its final status, with the calls and events not stored yet) can
fail, a full disk say. Nothing it carried may be lost: the run then records its failure
with those calls, and a resume numbers on from them."""

from __future__ import annotations

import asyncio

import pytest

from foreman import Orchestrator
from foreman.errors import StoreError
from foreman.store import SQLiteStore
from foreman.testing import ScriptedModel
from foreman.workers import Registry
from helpers import NO_DELAY, Script, latency_by_instructions, plan_of, task, worker

PLAN = plan_of(task("t1"), task("t2"))


class FailsOnce(SQLiteStore):
    """Refuses the first write of one final status."""

    def __init__(self, path, status: str) -> None:
        super().__init__(path)
        self.status, self.refused = status, False

    async def update_run(self, run_id, *, status, **fields):
        if status.value == self.status and not self.refused:
            self.refused = True
            raise StoreError("disk full")
        return await super().update_run(run_id, status=status, **fields)


async def test_a_failed_final_write_leaves_the_run_failed_with_every_call_on_the_books(tmp_path):
    store = FailsOnce(tmp_path / "runs.db", "succeeded")
    model = ScriptedModel(Script(PLAN))
    orchestrator = Orchestrator(
        Registry([worker("researcher")]), model=model, store=store, retry=NO_DELAY
    )
    with pytest.raises(StoreError, match="disk full"):
        await orchestrator.run("go", plan=PLAN)
    (summary,) = await store.list_runs()
    run = await store.get_run(summary.run_id)
    calls = await store.list_calls(run_id=summary.run_id)
    assert run.status.value == "failed"
    assert "disk full" in (run.error or "")
    assert len(model.requests) == 3 == len(calls) == run.calls  # two tasks and the synthesis
    assert sum(c.usage.input_tokens for c in calls) == run.usage.input_tokens
    events = await store.load_events(summary.run_id)
    assert [e["result"]["status"] for e in events if e["type"] == "run_finished"] == ["failed"]

    result = await orchestrator.resume(summary.run_id)
    calls = await store.list_calls(run_id=summary.run_id)
    assert result.status.value == "succeeded"
    assert len(model.requests) == 4 == len(calls) == result.calls
    assert sorted(c.attempt for c in calls if c.purpose.value == "synthesis") == [1, 2]
    await store.aclose()


async def test_a_failed_write_of_a_cancellation_leaves_the_run_failed_with_its_calls(tmp_path):
    plan = plan_of(task("t1"), task("t2", "researcher", "t1"))
    store = FailsOnce(tmp_path / "runs.db", "cancelled")
    slow, started = latency_by_instructions({"do t2": 30}), asyncio.Event()

    def latency(request):
        if seconds := slow(request):
            started.set()  # t2's call is under way
        return seconds

    model = ScriptedModel(Script(plan), latency=latency)
    orchestrator = Orchestrator(
        Registry([worker("researcher")]),
        model=model,
        store=store,
        retry=NO_DELAY,
        lease_seconds=0.3,  # the journal polls for a cancel every 0.1 s
    )
    job = asyncio.create_task(orchestrator.run("go", plan=plan))
    await started.wait()
    (summary,) = await store.list_runs()
    await store.cancel_run(summary.run_id)  # as `foreman cancel` does
    with pytest.raises(StoreError, match="disk full"):
        await job
    run = await store.get_run(summary.run_id)
    calls = await store.list_calls(run_id=summary.run_id)
    assert (run.status.value, run.error) == ("failed", "disk full")
    assert [(c.task_id, c.status.value) for c in calls] == [("t1", "ok"), ("t2", "cancelled")]
    await store.aclose()
