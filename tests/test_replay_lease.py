"""A replay writes to its run's ledger, so it holds the run's lease while it runs: never
beside an execution of the run (whose books would then disagree with the store's), nor
beside another replay of the same task (both would number their call attempt 1)."""

from __future__ import annotations

import asyncio

import pytest

from foreman import Orchestrator
from foreman.errors import RunLockedError
from foreman.store import MemoryStore
from foreman.testing import ScriptedModel
from foreman.workers import Registry
from helpers import NO_DELAY, Script, latency_by_instructions, plan_of, task, worker

PLAN = plan_of(task("t1"), task("t2"))


def orchestrator(store, latencies) -> Orchestrator:
    model = ScriptedModel(Script(PLAN), latency=latency_by_instructions(latencies))
    return Orchestrator(
        Registry([worker("researcher")]),
        model=model,
        store=store,
        assembly="concat",
        retry=NO_DELAY,
    )


async def test_a_replay_while_the_run_executes_is_refused_and_books_stay_in_step() -> None:
    store = MemoryStore()
    first = await orchestrator(store, {}).run("go", plan=PLAN)
    slow = orchestrator(store, {"do t2": 0.5})
    job = asyncio.create_task(slow.run("go", plan=PLAN))
    await asyncio.sleep(0.1)  # t2 in flight
    (running,) = [r for r in await store.list_runs() if r.run_id != first.run_id]
    with pytest.raises(RunLockedError):
        await slow.replay(running.run_id, "t1")
    result = await job
    record = await store.get_run(result.run_id)
    assert (result.calls, result.usage) == (record.calls, record.usage)


async def test_two_replays_of_one_run_at_once_one_is_refused_and_attempts_stay_distinct() -> None:
    store = MemoryStore()
    done = await orchestrator(store, {}).run("go", plan=PLAN)
    slow = orchestrator(store, {"do t1": 0.3})
    replays = await asyncio.gather(
        slow.replay(done.run_id, "t1"), slow.replay(done.run_id, "t1"), return_exceptions=True
    )
    assert sorted(type(r).__name__ for r in replays) == ["RunLockedError", "TaskResult"]
    await slow.replay(done.run_id, "t1")  # the lease is given back
    calls = await store.list_calls(run_id=done.run_id, task_id="t1")
    assert sorted(c.attempt for c in calls if c.parent == "replay:t1") == [1, 2]
