"""Engine behaviour that seeded bugs (mutation testing, issue 6) changed without a test failing:
a consumer that raises at the end of a run that succeeded reaches the caller (only a run
that is already failing ignores it), and the run's record stays as stored."""

from __future__ import annotations

import asyncio

import pytest

from foreman import Orchestrator
from foreman.engine.results import RunStatus
from foreman.events import Event, RunFinished
from foreman.store import MemoryStore
from foreman.testing import ScriptedModel
from foreman.workers import Registry
from helpers import NO_DELAY, Script, plan_of, task, worker

TEAM = Registry([worker("researcher"), worker("writer")])
TWO = plan_of(task("t1"), task("t2", "writer", "t1"))


class ConsumerError(Exception):
    pass


def orchestrator(model: ScriptedModel, store: MemoryStore) -> Orchestrator:
    return Orchestrator(TEAM, model=model, store=store, retry=NO_DELAY, assembly="concat")


async def test_a_consumer_raising_at_the_end_of_a_succeeded_run_reaches_the_caller() -> None:
    seen: list[Event] = []

    def consumer(event: Event) -> None:
        seen.append(event)
        if isinstance(event, RunFinished):
            raise ConsumerError("display broke")

    store = MemoryStore()
    with pytest.raises(ConsumerError, match="display broke"):
        async with asyncio.timeout(10):
            await orchestrator(ScriptedModel(Script(TWO)), store).run("x", on_event=consumer)
    run_id = seen[-1].run_id
    assert (await store.get_run(run_id)).status is RunStatus.succeeded
