"""A task waiting for approval holds back its whole downstream chain, not just its direct
dependants, and the run still ends (paused) instead of waiting forever for tasks that can
never start. After approval, resume runs the chain, each task once."""

from __future__ import annotations

import asyncio
from collections import Counter

from foreman import Orchestrator
from foreman.results import RunStatus, TaskStatus
from foreman.store import MemoryStore
from foreman.testing import ScriptedModel
from foreman.workers import Registry
from helpers import Script, instructions_of, plan_of, task, worker, worker_requests

TEAM = Registry([worker("researcher"), worker("deployer", risk="high")])

# gate (waits) -> c1 -> c2 -> c3, and c2 also needs the free branch; free2 needs only free.
PLAN = plan_of(
    task("gate", "deployer"),
    task("free"),
    task("c1", "researcher", "gate"),
    task("c2", "researcher", "c1", "free"),
    task("c3", "researcher", "c2"),
    task("free2", "researcher", "free"),
)


def calls(model: ScriptedModel) -> Counter[str]:
    return Counter(instructions_of(r).removeprefix("do ") for r in worker_requests(model))


async def test_a_waiting_task_holds_back_every_task_downstream_and_the_run_pauses() -> None:
    store = MemoryStore()
    model = ScriptedModel(Script())
    orchestrator = Orchestrator(TEAM, model=model, store=store, assembly="concat")

    async with asyncio.timeout(10):  # a chain counted as still to come would hang here
        result = await orchestrator.run("x", plan=PLAN)

    assert result.status is RunStatus.waiting_approval
    assert {t: r.status for t, r in result.tasks.items()} == {
        "gate": TaskStatus.waiting,
        "free": TaskStatus.succeeded,
        "free2": TaskStatus.succeeded,
    }
    assert calls(model) == Counter({"free": 1, "free2": 1})

    await store.decide(result.run_id, "gate", approved=True, note=None)
    async with asyncio.timeout(10):
        resumed = await orchestrator.resume(result.run_id)

    assert resumed.status is RunStatus.succeeded
    assert calls(model) == Counter({t.id: 1 for t in PLAN.tasks})


async def test_two_waiting_tasks_sharing_a_descendant_pause_the_run_once() -> None:
    plan = plan_of(
        task("a", "deployer"),
        task("b", "deployer"),
        task("both", "researcher", "a", "b"),
        task("after", "researcher", "both"),
        task("free"),
    )
    model = ScriptedModel(Script())
    orchestrator = Orchestrator(TEAM, model=model, assembly="concat")

    async with asyncio.timeout(10):
        result = await orchestrator.run("x", plan=plan)

    assert result.status is RunStatus.waiting_approval
    assert sorted(result.tasks) == ["a", "b", "free"]
    assert calls(model) == Counter({"free": 1})
