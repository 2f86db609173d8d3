"""Stall detection, and resuming a run whose plan was revised."""

from __future__ import annotations

import contextlib
from typing import Any

from foreman import Orchestrator
from foreman.errors import ModelError
from foreman.events import EVENT_ADAPTER, ReplanStalled, TaskStarted
from foreman.results import RunStatus, TaskStatus
from foreman.store.base import ApprovalStatus
from foreman.store.memory import MemoryStore
from foreman.store.sqlite import SQLiteStore
from helpers import of_type, plan_of, task, worker
from replan_helpers import (
    KEEP,
    TEAM,
    add,
    latency,
    model,
    orchestrator,
    replan_requests,
    states,
    worker_calls,
)

CHAIN = plan_of(task("t1"), task("t2", "writer", "t1"), task("t3", "writer", "t2"))


def hinted(text: str) -> str:
    return f"found things\nREPLAN: {text}"


async def test_re_adding_a_task_already_done_stalls_and_no_task_starts_after() -> None:
    again = {
        "reason": "once more",
        "add": [{"id": "t9", "worker": "researcher", "instructions": "Do  T1.", "depends_on": []}],
        "change": [],
        "drop": [],
    }
    scripted = model(CHAIN, lambda _: again, tasks={"do t1": hinted("more")})
    events: list[Any] = []
    result = await orchestrator(scripted, replan="on-hint").run("req", on_event=events.append)

    assert result.status is RunStatus.stalled
    assert "repeats task 't1' (succeeded) as 't9'" in result.error
    assert [e.reason for e in of_type(events, ReplanStalled)] == [result.error.split(": ", 1)[1]]
    assert worker_calls(scripted) == ["do t1"]  # t2, t3 never started
    for event in events:  # every event round-trips through JSON, the new ones included
        assert EVENT_ADAPTER.validate_json(event.model_dump_json()) == event
    assert "found things" in result.answer  # what finished is assembled
    assert "not run: replanning stalled" in result.answer


async def test_revisions_that_add_nothing_new_stall_after_two_in_a_row() -> None:
    def revise(message: dict[str, Any]) -> dict[str, Any]:
        pending = [t for t in message["plan"] if t["state"] == "pending"]
        if not pending:
            return KEEP
        copy = dict(pending[0], id=f"copy{len(message['results'])}")  # a twin of a pending one
        copy.pop("state")
        return {"reason": "same again", "add": [copy], "change": [], "drop": []}

    scripted = model(CHAIN, revise)
    result = await orchestrator(scripted).run("req")
    assert result.status is RunStatus.stalled
    assert "2 revisions in a row added nothing new" in result.error
    assert worker_calls(scripted) == ["do t1", "do t2"]  # the second idle one stopped t3
    assert set(result.plan.model_dump()["tasks"][i]["id"] for i in range(3)) == {"t1", "t2", "t3"}


async def test_an_idle_revision_then_a_real_one_does_not_stall() -> None:
    answers = iter(
        [
            {
                "reason": "twin",
                "add": [{"id": "x", "worker": "writer", "instructions": "do t2", "depends_on": []}],
                "change": [],
                "drop": [],
            },
            add(("t4", "writer", [])),
        ]
    )
    scripted = model(CHAIN, lambda _: next(answers, KEEP))
    result = await orchestrator(scripted).run("req")
    assert result.status is RunStatus.succeeded
    assert set(result.tasks) == {"t1", "t2", "t3", "t4"}


async def test_the_same_subtask_failing_twice_stalls() -> None:
    def revise(message: dict[str, Any]) -> dict[str, Any]:
        if states(message).get("t1") == "failed" and "t9" not in states(message):
            retry = {
                "id": "t9",
                "worker": "researcher",
                "instructions": "do t1 again",
                "depends_on": [],
            }
            return {"reason": "retry t1", "add": [retry], "change": [], "drop": []}
        return KEEP

    broken = ModelError("400 the source is gone")
    scripted = model(
        plan_of(task("t1"), task("t2", "writer")),
        revise,
        tasks={"do t1": broken, "do t1 again": broken},
        latency=latency({"do t2": 0.3}),
    )
    result = await orchestrator(scripted).run("req")
    assert result.status is RunStatus.stalled
    assert "the same subtask failed 2 times (t1, t9)" in result.error
    assert result.tasks["t1"].status is result.tasks["t9"].status is TaskStatus.failed
    assert result.tasks["t2"].succeeded  # running when it stalled: it finished


async def test_a_stalled_run_resumes_with_the_rest_of_its_latest_plan() -> None:
    again = {
        "reason": "again",
        "add": [{"id": "t9", "worker": "researcher", "instructions": "do t1", "depends_on": []}],
        "change": [],
        "drop": [],
    }
    store = MemoryStore()
    scripted = model(CHAIN, lambda _: again, tasks={"do t1": hinted("more")})
    first = await orchestrator(scripted, replan="on-hint", store=store).run("req")
    assert first.status is RunStatus.stalled

    later = model(CHAIN, lambda _: KEEP)
    resumed = await orchestrator(later, replan="on-hint", store=store).resume(first.run_id)
    assert resumed.status is RunStatus.succeeded
    assert worker_calls(later) == ["do t2", "do t3"]  # t1 is never repeated


async def test_resume_after_an_interruption_continues_from_the_latest_version(tmp_path) -> None:
    store = SQLiteStore(tmp_path / "runs.db")

    def revise(message: dict[str, Any]) -> dict[str, Any]:
        if "t4" not in states(message):
            return add(("t4", "coder", ["t1"]), reason="t1 found a fourth part")
        return KEEP

    slow = model(CHAIN, revise, tasks={"do t1": hinted("more")}, latency=latency({"do t4": 30}))
    first = orchestrator(slow, replan="on-hint", store=store)
    run_id = None
    async with contextlib.aclosing(first.stream("req")) as stream:
        async for event in stream:
            run_id = event.run_id
            if isinstance(event, TaskStarted) and event.task_id == "t4":
                break  # the process stops while the revision's task runs
    record = await store.get_run(run_id)
    settled = {f"do {tid}" for tid in await store.load_tasks(run_id)}
    assert record.status is RunStatus.interrupted and "do t1" in settled
    assert record.plan_version == 2 and "t4" in {t.id for t in record.plan.tasks}

    fast = model(CHAIN, revise)
    resumed = await orchestrator(fast, replan="on-hint", store=store).resume(run_id)
    assert resumed.status is RunStatus.succeeded
    assert "do t4" in worker_calls(fast)
    assert not settled & set(worker_calls(fast))  # no settled task is repeated
    assert settled | set(worker_calls(fast)) == {"do t1", "do t2", "do t3", "do t4"}
    assert replan_requests(fast) == []  # t2..t4 gave no hint
    assert [v.version for v in await store.list_plans(run_id)] == [1, 2]
    await store.aclose()


async def test_a_revision_that_adds_a_risky_task_pauses_for_approval_and_resumes() -> None:
    team = [*TEAM, worker("deployer", risk="high")]
    store = MemoryStore()
    scripted = model(
        CHAIN, lambda m: add(("t4", "deployer", ["t3"])) if "t4" not in states(m) else KEEP
    )
    options: dict[str, Any] = {"replan": "always", "max_replans": 1, "assembly": "concat"}
    paused = await Orchestrator(team, model=scripted, store=store, **options).run("req")
    assert paused.status is RunStatus.waiting_approval
    assert paused.tasks["t4"].status is TaskStatus.waiting
    assert len(replan_requests(scripted)) == 1  # after t1; the bound stopped the rest

    await store.decide(paused.run_id, "t4", approved=True, note=None)
    assert (await store.get_approval(paused.run_id, "t4")).status is ApprovalStatus.approved
    later = model(CHAIN, lambda _: KEEP)
    done = await Orchestrator(team, model=later, store=store, **options).resume(paused.run_id)
    assert done.status is RunStatus.succeeded
    assert worker_calls(later) == ["do t4"]
    assert replan_requests(later) == []  # the bound counts the stored versions: reached
