"""A Ctrl-C while a run's lease is being taken: the store takes it anyway (a write handed
to it always runs), so the run gives it back, and a new run ends ``interrupted`` as after
any Ctrl-C. Resume is not locked out for the lease's 30 seconds."""

from __future__ import annotations

import asyncio

import pytest

from foreman import Orchestrator
from foreman.store import SQLiteStore
from foreman.testing import ScriptedModel
from foreman.workers import Registry
from helpers import NO_DELAY, Script, plan_of, task, worker

PLAN = plan_of(task("t1"))


class Watched(SQLiteStore):
    """Says when a lease is asked for."""

    def __init__(self, path):
        super().__init__(path)
        self.asked = asyncio.Event()

    async def acquire_lease(self, run_id, owner, ttl):
        self.asked.set()
        return await super().acquire_lease(run_id, owner, ttl)


async def interrupted_while_leasing(orchestrator, store, start):
    store.asked.clear()
    job = asyncio.create_task(start())
    await store.asked.wait()
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job


async def test_a_run_interrupted_while_taking_its_lease_ends_interrupted_and_resumes(tmp_path):
    store = Watched(tmp_path / "runs.db")
    model = ScriptedModel(Script(PLAN))
    orchestrator = Orchestrator(
        Registry([worker("researcher")]), model=model, store=store, retry=NO_DELAY
    )
    await interrupted_while_leasing(orchestrator, store, lambda: orchestrator.run("go", plan=PLAN))
    (summary,) = await store.list_runs()
    assert (await store.get_run(summary.run_id)).status.value == "interrupted"

    # Interrupted again while a resume takes the lease: the status it had stays.
    run_id = summary.run_id
    await interrupted_while_leasing(orchestrator, store, lambda: orchestrator.resume(run_id))
    assert (await store.get_run(run_id)).status.value == "interrupted"

    result = await orchestrator.resume(run_id)  # no lease left behind
    assert result.status.value == "succeeded"
    await store.aclose()


async def test_a_keyboard_interrupt_raised_inside_a_run_leaves_it_interrupted_with_its_calls(
    tmp_path,
) -> None:
    """Raised by a model or a tool (not delivered as a cancellation): the run still ends
    ``interrupted``, with what it spent on the books, and resumes."""
    plan = plan_of(task("t1"), task("t2", "researcher", "t1"))
    script = Script(plan)

    def answer(request):
        if "do t2" in request.messages[0].content and not answer.raised:
            answer.raised = True
            raise KeyboardInterrupt
        return script(request)

    answer.raised = False
    store = SQLiteStore(tmp_path / "runs.db")
    model = ScriptedModel(answer)
    orchestrator = Orchestrator(
        Registry([worker("researcher")]), model=model, store=store, retry=NO_DELAY
    )
    with pytest.raises(KeyboardInterrupt):
        await orchestrator.run("go", plan=plan)
    (summary,) = await store.list_runs()
    run = await store.get_run(summary.run_id)
    assert run.status.value == "interrupted"
    assert run.calls == 2  # t1's, and t2's cut short
    result = await orchestrator.resume(summary.run_id)
    assert result.status.value == "succeeded"
    await store.aclose()


class CancelledAsItEnds(SQLiteStore):
    """`foreman cancel` lands while the run's final status is being written."""

    asked = False

    async def update_run(self, run_id, *, status, **fields):
        if status.value == "succeeded":
            self.asked = True
            await asyncio.sleep(0.2)  # several cancel polls fit in here
        return await super().update_run(run_id, status=status, **fields)

    async def cancel_requested(self, run_id):
        return self.asked or await super().cancel_requested(run_id)


async def test_a_cancel_landing_as_the_run_ends_never_turns_its_end_into_a_cancellation(
    tmp_path,
) -> None:
    store = CancelledAsItEnds(tmp_path / "runs.db")
    orchestrator = Orchestrator(
        Registry([worker("researcher")]),
        model=ScriptedModel(Script(PLAN)),
        store=store,
        retry=NO_DELAY,
        lease_seconds=0.03,  # the journal polls for a cancel every 10 ms
    )
    result = await orchestrator.run("go", plan=PLAN)
    assert result.status.value == "succeeded"
    assert (await store.get_run(result.run_id)).status.value == "succeeded"
    await store.aclose()
