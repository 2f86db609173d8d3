"""A replay writes to its run's ledger: it is refused while the run is running, whose
execution counts only its own calls (its books would then disagree with the store's). It
takes no lease: a replay never stands in the way of the run's resume."""

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


async def test_a_replay_takes_no_lease_a_resume_or_another_replay_would_wait_for() -> None:
    store = MemoryStore()
    done = await orchestrator(store, {}).run("go", plan=PLAN)
    slow = orchestrator(store, {"do t1": 0.3})
    replays = await asyncio.gather(slow.replay(done.run_id, "t1"), slow.replay(done.run_id, "t1"))
    assert [r.output for r in replays] == ["out:do t1", "out:do t1"]
    assert (await store.get_run(done.run_id)).status.value == "succeeded"
