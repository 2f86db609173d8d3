"""A run's tokens and cost equal the sum of its ledger rows and what the providers billed,
across failed planning, aborts, resumes, replays and interruptions (Ctrl-C).

The cases the issue measured as wrong: failed planning counted 0 of its tokens; resuming an
aborted run dropped the failed task's tokens; calls in flight at Ctrl-C were missing. Each
runs against the two billing fake providers (see ``books_audit``), on both stores.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import BaseModel

from books_audit import (
    PLANNER,
    RESEARCH,
    RESEARCH_BACKUP,
    TEAM,
    Fakes,
    audit,
    models_closed,
    orchestrator,
    plan_answer,
    same_books,
    serve,
)
from fake_provider import HANG, FakeProvider, WireScript
from foreman import Budget
from foreman.errors import PlanError
from foreman.events import Event, RunStarted
from foreman.ledger.books import Books
from foreman.ledger.records import CallStatus
from foreman.results import RunStatus, TaskStatus
from foreman.store.base import Store
from foreman.workers import Registry
from helpers import plan_of, task, worker


class Out(BaseModel):
    value: int


pytestmark = pytest.mark.usefixtures("provider_env")


class RunIds:
    """An ``on_event`` that keeps the run id (a run that raises returns none)."""

    def __init__(self) -> None:
        self.run_id = ""

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.run_id = event.run_id


async def arrived(fake: FakeProvider, requests: int) -> None:
    """Wait (30 s at most) until ``fake`` has received ``requests`` requests."""
    for _ in range(3000):
        if len(fake.requests) >= requests:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the fake received {len(fake.requests)} of {requests} requests")


async def test_a_failed_planning_costs_every_answer_the_planner_gave_and_resume_keeps_them(
    fakes: Fakes, store: Store
) -> None:
    """A rate limit, then four answers, none a valid plan (one not even the forced tool
    call): the run fails, and each answer is on its books at the planner's price."""
    bad = {"tasks": [{"id": "x", "worker": "ghost", "instructions": "?"}]}
    script = WireScript(plan=[429, bad, "no plan, just words", bad])
    serve(fakes, script)
    ids = RunIds()
    async with models_closed(orchestrator(fakes, store)) as orch:
        with pytest.raises(PlanError):
            await orch.run("impossible", on_event=ids)

        rows = await audit(store, ids.run_id, fakes)
        record = await store.get_run(ids.run_id)
        assert record.status is RunStatus.failed
        error = CallStatus.error
        # Refused, then answers that were no plan: each an error, each answer's tokens kept.
        assert {row.status for row in rows} == {error}
        kinds = ["RateLimitError", "PlanRejected", "OutputValidationError"]
        assert [row.error_type for row in rows] == [*kinds, "PlanRejected", "PlanRejected"]
        anthropic, openai = fakes
        assert len(anthropic.bill) == 4 and not openai.requests
        assert record.usage.total_tokens > 0 and record.cost_usd

        # Resumed, it plans again (numbered on) and runs; the failed planning stays paid.
        script.steps["plan"] = [plan_answer(plan_of(task("t1")))]
        resumed = await orch.resume(ids.run_id)

    assert resumed.status is RunStatus.succeeded
    rows = await audit(store, ids.run_id, fakes)
    same_books(resumed, rows)
    assert [row.attempt for row in rows if row.parent == "plan"] == [1, 2, 3, 4, 5, 6]
    planning = Books.of(row for row in rows if row.parent == "plan").usage
    assert (await store.get_run(ids.run_id)).plan_usage == planning


CHECKED = Registry(
    [
        *TEAM,
        worker(
            "checker",
            model=RESEARCH,
            fallback_model=RESEARCH_BACKUP,
            output_schema=Out,
            on_failure="abort",
        ),
    ]
)
CHAIN = plan_of(task("t0"), task("t1", "checker", "t0"), task("t2", "researcher", "t1"))


async def test_resuming_an_aborted_run_keeps_the_failed_tasks_tokens(
    fakes: Fakes, store: Store
) -> None:
    """t1 answers unusable JSON on both its models (billed) and aborts the run; resumed,
    it succeeds. The run's books keep both executions."""
    script = WireScript(
        plan=[plan_answer(CHAIN)], tasks={"do t1": ["not json"] * 6 + ['{"value": 1}']}
    )
    serve(fakes, script)
    async with models_closed(orchestrator(fakes, store, team=CHECKED)) as orch:
        aborted = await orch.run("a chain")
        assert aborted.status is RunStatus.aborted
        assert aborted.tasks["t1"].status is TaskStatus.failed
        rows = await audit(store, aborted.run_id, fakes)
        same_books(aborted, rows)
        failed = [row for row in rows if row.parent == "task:t1"]
        assert [row.model for row in failed] == [RESEARCH] * 3 + [RESEARCH_BACKUP] * 3
        assert all(row.error_type == "OutputValidationError" for row in failed)

        resumed = await orch.resume(aborted.run_id)

    assert resumed.status is RunStatus.succeeded
    rows = await audit(store, aborted.run_id, fakes)
    same_books(resumed, rows)  # t1's record keeps its six failed calls too
    assert resumed.usage.total_tokens > aborted.usage.total_tokens
    assert [r.attempt for r in rows if r.parent == "task:t1"] == [1, 2, 3, 4, 5, 6, 7]


async def test_replays_on_another_provider_join_the_runs_books(fakes: Fakes, store: Store) -> None:
    serve(fakes, WireScript(plan=[plan_answer(plan_of(task("t1"), task("t2")))]))
    async with models_closed(orchestrator(fakes, store)) as orch:
        result = await orch.run("two tasks")
        before = (await store.get_run(result.run_id)).cost_usd
        first = await orch.replay(result.run_id, "t1", model=RESEARCH_BACKUP)
        second = await orch.replay(result.run_id, "t1")

    rows = await audit(store, result.run_id, fakes)
    replays = [row for row in rows if row.parent == "replay:t1"]
    assert [(row.model, row.purpose, row.attempt) for row in replays] == [
        (RESEARCH_BACKUP, "replay", 1),
        (RESEARCH, "replay", 2),
    ]
    assert [first.usage, second.usage] == [row.usage for row in replays]
    assert (await store.get_run(result.run_id)).cost_usd == pytest.approx(
        before + sum(row.cost_usd for row in replays), rel=1e-9
    )


async def test_a_call_in_flight_at_ctrl_c_is_on_the_books_and_counted_after_resume(
    fakes: Fakes, store: Store
) -> None:
    """Ctrl-C (cancellation) while t2's call hangs: that call is ``interrupted``, its input
    estimated and flagged, and the resumed run's books count it with everything billed."""
    serve(
        fakes,
        WireScript(
            plan=[plan_answer(plan_of(task("t1"), task("t2", "researcher", "t1")))],
            tasks={"do t2": [HANG, "found t2"]},
        ),
    )
    ids = RunIds()
    openai = fakes[1]
    async with models_closed(orchestrator(fakes, store)) as orch:
        run = asyncio.create_task(orch.run("two tasks", on_event=ids))
        await arrived(openai, 2)  # t1 answered, t2 held
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run

        record = await store.get_run(ids.run_id)
        assert record.status is RunStatus.interrupted
        rows = await audit(store, ids.run_id, fakes, estimated=1)
        [cut] = [row for row in rows if row.estimated]
        assert (cut.status, cut.task_id) == (CallStatus.interrupted, "t2")
        assert record.usage.input_tokens >= cut.usage.input_tokens > 0

        resumed = await orch.resume(ids.run_id)

    assert resumed.status is RunStatus.succeeded
    rows = await audit(store, ids.run_id, fakes, estimated=1)
    assert cut in rows
    same_books(resumed, rows)
    assert PLANNER in {row.model for row in rows}


async def test_a_planning_cut_short_by_ctrl_c_counts_its_prompt_and_schema(
    fakes: Fakes, store: Store
) -> None:
    """The planner's call never answers; its estimate counts what the provider bills as
    input: the system prompt, the request and the plan schema (a forced tool's input)."""
    serve(fakes, WireScript(plan=[HANG]))
    ids = RunIds()
    anthropic = fakes[0]
    async with models_closed(orchestrator(fakes, store)) as orch:
        run = asyncio.create_task(orch.run("plan this", on_event=ids))
        await arrived(anthropic, 1)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run

    record = await store.get_run(ids.run_id)
    assert record.status is RunStatus.interrupted
    [cut] = await audit(store, ids.run_id, fakes, estimated=1)
    assert (cut.parent, cut.status) == ("plan", CallStatus.interrupted)
    sent = anthropic.requests[0].body
    schema_chars = len(json.dumps(sent["tools"][0]["input_schema"]))
    prompt_chars = len(sent["system"]) + len(sent["messages"][0]["content"])
    assert cut.usage.input_tokens >= (schema_chars + prompt_chars) // 4
    assert record.usage == cut.usage and record.cost_usd == pytest.approx(cut.cost_usd)


async def test_an_abort_keeps_a_call_it_cut_short_on_the_books(fakes: Fakes, store: Store) -> None:
    """t1 aborts the run while t2's call hangs: that call is stopped, estimated, counted,
    and so is everything billed; the resumed run counts all of it once."""
    script = WireScript(
        plan=[plan_answer(plan_of(task("t1", "checker"), task("t2")))],
        tasks={"do t1": ["not json"] * 6 + ['{"value": 1}'], "do t2": [HANG]},
    )
    serve(fakes, script)
    async with models_closed(orchestrator(fakes, store, team=CHECKED)) as orch:
        aborted = await orch.run("two at once")
        assert aborted.status is RunStatus.aborted
        rows = await audit(store, aborted.run_id, fakes, estimated=1)
        same_books(aborted, rows)
        [cut] = [row for row in rows if row.estimated]
        assert (cut.task_id, cut.status) == ("t2", CallStatus.interrupted)

        script.steps["task:do t2"] = ["found t2"]
        resumed = await orch.resume(aborted.run_id)

    assert resumed.status is RunStatus.succeeded
    rows = await audit(store, aborted.run_id, fakes, estimated=1)
    same_books(resumed, rows)


async def test_a_cancelled_run_keeps_the_call_it_stopped_on_the_books(
    fakes: Fakes, store: Store
) -> None:
    """``foreman cancel`` (the store's flag) while t2's call hangs: ``cancelled``, estimated."""
    serve(
        fakes,
        WireScript(plan=[plan_answer(plan_of(task("t1"), task("t2")))], tasks={"do t2": [HANG]}),
    )
    ids = RunIds()
    async with models_closed(orchestrator(fakes, store)) as orch:
        run = asyncio.create_task(orch.run("two at once", on_event=ids))
        await arrived(fakes[1], 2)
        await store.cancel_run(ids.run_id)
        async with asyncio.timeout(30):
            result = await run

    assert result.status is RunStatus.cancelled
    rows = await audit(store, ids.run_id, fakes, estimated=1)
    same_books(result, rows)
    [cut] = [row for row in rows if row.estimated]
    assert (cut.task_id, cut.status) == ("t2", CallStatus.cancelled)


async def test_a_run_stopped_at_its_budget_and_resumed_keeps_its_books(
    fakes: Fakes, store: Store
) -> None:
    """Four calls allowed (planning, t1, t2's 429 and its retry): the run stops
    ``over_budget`` before t3; resumed under a raised budget, it finishes. Both times
    the books are the ledger's sum and the providers' bill."""
    plan = plan_of(task("t1"), task("t2"), task("t3", "writer", "t1", "t2"))
    serve(fakes, WireScript(plan=[plan_answer(plan)], tasks={"do t2": [429, "found t2"]}))
    async with models_closed(orchestrator(fakes, store, budget=Budget(max_calls=4))) as orch:
        stopped = await orch.run("three tasks")
        assert stopped.status is RunStatus.over_budget
        assert "t3" not in stopped.tasks or not stopped.tasks["t3"].succeeded
        rows = await audit(store, stopped.run_id, fakes)
        same_books(stopped, rows)
        assert len(rows) == 4

        resumed = await orch.resume(stopped.run_id, budget=Budget(max_calls=10))

    assert resumed.status is RunStatus.succeeded
    rows = await audit(store, stopped.run_id, fakes)
    same_books(resumed, rows)
    assert len(rows) == 6  # t3 and the synthesis


async def test_a_budget_that_cancels_running_calls_keeps_them_on_the_books(
    fakes: Fakes, store: Store
) -> None:
    """A token budget reached when t1 answers, ``on_limit="cancel"``: t2's call, still
    held by the provider, is stopped, on the books at its estimate."""
    serve(
        fakes,
        WireScript(plan=[plan_answer(plan_of(task("t1"), task("t2")))], tasks={"do t2": [HANG]}),
    )
    budget = Budget(max_tokens=2000, on_limit="cancel")
    async with models_closed(orchestrator(fakes, store, budget=budget)) as orch:
        async with asyncio.timeout(30):
            stopped = await orch.run("two at once")

    assert stopped.status is RunStatus.over_budget
    rows = await audit(store, stopped.run_id, fakes, estimated=1)
    same_books(stopped, rows)
    [cut] = [row for row in rows if row.estimated]
    assert (cut.task_id, cut.status) == ("t2", CallStatus.cancelled)
