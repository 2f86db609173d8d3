"""Approval levels and approver failures, through the public Orchestrator.

``auto_approve`` decides which workers run without asking: nothing (None or 'low') lets only
low-risk workers run unasked; 'medium' adds medium-risk ones; high risk always asks. And an
approver callback that raises must end the run in a terminal state, with the risky task
never executed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from foreman import Orchestrator
from foreman.events import ApprovalRequested, RunFinished
from foreman.results import RunStatus, TaskStatus
from foreman.store import Approval, ApprovalStatus, MemoryStore
from foreman.testing import ScriptedModel
from foreman.workers import Registry
from helpers import Script, of_type, plan_of, task, worker, worker_requests

TEAM = Registry(
    [
        worker("safe"),  # low risk
        worker("editor", risk="medium"),
        worker("deployer", risk="high"),
    ]
)
PLAN = plan_of(task("t_low", "safe"), task("t_medium", "editor"), task("t_high", "deployer"))

# The tasks asked about at each level, with a callback that approves everything.
ASKED = {
    None: ["t_high", "t_medium"],
    "low": ["t_high", "t_medium"],
    "medium": ["t_high"],
}


async def run_plan(store: MemoryStore, **kwargs: Any) -> tuple[Any, list[Any], ScriptedModel]:
    model = ScriptedModel(Script(PLAN))
    events: list[Any] = []
    orchestrator = Orchestrator(TEAM, model=model, store=store, assembly="concat", **kwargs)
    async with asyncio.timeout(10):
        result = await orchestrator.run("x", plan=PLAN, on_event=events.append)
    return result, events, model


@pytest.mark.parametrize("level", list(ASKED))
async def test_each_level_asks_about_exactly_the_workers_above_it(level: str | None) -> None:
    seen: list[Approval] = []

    def approve(approval: Approval) -> bool:
        seen.append(approval)
        return True

    store = MemoryStore()
    result, events, model = await run_plan(store, approve=approve, auto_approve=level)

    assert result.status is RunStatus.succeeded
    assert sorted(a.task_id for a in seen) == ASKED[level]
    assert sorted(e.task_id for e in of_type(events, ApprovalRequested)) == ASKED[level]
    assert sorted(a.task_id for a in await store.list_approvals(None)) == ASKED[level]
    assert len(worker_requests(model)) == 3  # every task ran once


@pytest.mark.parametrize("level", list(ASKED))
async def test_without_an_approver_each_level_parks_exactly_the_workers_above_it(
    level: str | None,
) -> None:
    store = MemoryStore()
    result, _, model = await run_plan(store, auto_approve=level)

    assert result.status is RunStatus.waiting_approval
    waiting = sorted(t for t, r in result.tasks.items() if r.status is TaskStatus.waiting)
    assert waiting == ASKED[level]
    ran = sorted(t for t, r in result.tasks.items() if r.status is TaskStatus.succeeded)
    assert ran == sorted(set(result.tasks) - set(ASKED[level]))
    assert len(worker_requests(model)) == 3 - len(ASKED[level])
    pending = await store.list_approvals(ApprovalStatus.pending)
    assert sorted(a.task_id for a in pending) == ASKED[level]


def test_the_level_is_recorded_in_the_run_settings() -> None:
    orchestrator = Orchestrator(TEAM, model=ScriptedModel([]), auto_approve="medium")
    assert orchestrator.settings["auto_approve"] == "medium"
    assert Orchestrator(TEAM, model=ScriptedModel([])).settings["auto_approve"] is None


# --- an approver that raises ---------------------------------------------------------------


class ApproverBroke(Exception):
    pass


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_an_approver_that_raises_ends_the_run_without_running_the_task(kind: str) -> None:
    def broken(approval: Approval) -> bool:
        raise ApproverBroke("the approval service is down")

    async def broken_async(approval: Approval) -> bool:
        raise ApproverBroke("the approval service is down")

    store = MemoryStore()
    model = ScriptedModel(Script(PLAN))
    events: list[Any] = []
    orchestrator = Orchestrator(
        TEAM,
        model=model,
        store=store,
        approve=broken if kind == "sync" else broken_async,
        assembly="concat",
    )
    plan = plan_of(task("t_high", "deployer"))
    outcome: Any
    async with asyncio.timeout(10):
        try:
            outcome = await orchestrator.run("x", plan=plan, on_event=events.append)
        except Exception as exc:  # raising is a clear outcome too, if it says what broke
            outcome = exc
    [run] = await store.list_runs()

    # The risky task never executed, whatever the outcome.
    assert worker_requests(model) == []
    # The run is not left 'running' forever: it ended in a state a person can act on.
    assert run.status is not RunStatus.running
    assert of_type(events, RunFinished), [e.type for e in events]
    # And the outcome says what went wrong.
    if isinstance(outcome, BaseException):
        assert "approval service is down" in str(outcome)
    else:
        text = " ".join(
            filter(None, [outcome.error, *(r.error or "" for r in outcome.tasks.values())])
        )
        assert "approval service is down" in text, outcome
