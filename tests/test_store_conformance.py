"""One conformance suite for every ``Store``: what foreman relies on, run against each.

The parametrized ``store`` fixture gives a ``MemoryStore`` and a ``SQLiteStore``; a new
implementation joins by adding itself there. The tests at the end are SQLite's own: files,
processes, a corrupted or newer database, a full disk, a lock held by someone else, and
storage that grows linearly with the number of tasks.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from foreman.engine.results import RunStatus, TaskResult, TaskStatus
from foreman.errors import (
    AmbiguousRunError,
    ApprovalError,
    CorruptedRunError,
    RunFinishedError,
    RunLockedError,
    StoreError,
    StoreNotFoundError,
    UnknownRunError,
)
from foreman.events import Assembled, TaskFailed, TaskFinished, TaskStarted
from foreman.models.base import Usage
from foreman.plan.schema import Plan, Task
from foreman.store import (
    Approval,
    ApprovalStatus,
    LeaseOwner,
    MemoryStore,
    RunRecord,
    SQLiteStore,
    Store,
)
from foreman.store.migrations import MIGRATIONS
from foreman.workers.spec import RiskLevel

# --- builders ---------------------------------------------------------------------------


def run_record(run_id: str = "run-1", **fields: Any) -> RunRecord:
    fields.setdefault("request", f"request of {run_id}")
    return RunRecord(run_id=run_id, **fields)


def plan(*task_ids: str) -> Plan:
    return Plan(
        tasks=[
            Task(id=task_id, worker="researcher", instructions=f"do {task_id}")
            for task_id in task_ids
        ]
    )


def result(task_id: str, status: TaskStatus = TaskStatus.succeeded, **fields: Any) -> TaskResult:
    fields.setdefault("output", f"output of {task_id}")
    return TaskResult(task_id=task_id, worker="researcher", status=status, **fields)


def approval(task_id: str, run_id: str = "run-1", **fields: Any) -> Approval:
    fields.setdefault("worker", "mailer")
    fields.setdefault("risk", RiskLevel.high)
    fields.setdefault("instructions", f"do {task_id}")
    fields.setdefault("inputs", f"the message for {task_id}")
    return Approval(run_id=run_id, task_id=task_id, **fields)


def as_stored(events: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(event.model_dump_json()) for event in events]


# --- the store under test ----------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    implementation = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "r.db")
    yield implementation
    await implementation.aclose()


# --- runs --------------------------------------------------------------------------------


async def test_run_round_trips(store: Store) -> None:
    settings = {"model": "local", "max_tasks": 4, "team": ["researcher", "writer"]}
    created = run_record("run-1", settings=settings, created_at=100.0, updated_at=100.0)
    await store.create_run(created)

    run = await store.get_run("run-1")

    assert run.run_id == "run-1"
    assert run.request == "request of run-1"
    assert run.status is RunStatus.running
    assert run.settings == settings
    assert (run.plan, run.plan_version, run.answer, run.error) == (None, 0, None, None)
    assert run.usage == Usage()
    assert (run.created_at, run.updated_at) == (100.0, 100.0)


async def test_unknown_run_is_a_helpful_error(store: Store) -> None:
    with pytest.raises(UnknownRunError, match=r"No run 'nope'") as raised:
        await store.get_run("nope")
    assert isinstance(raised.value, StoreError)


async def test_writes_to_an_unknown_run_raise_unknown_run(store: Store) -> None:
    with pytest.raises(UnknownRunError, match="nope"):
        await store.update_run("nope", status=RunStatus.succeeded)
    with pytest.raises(UnknownRunError, match="nope"):
        await store.save_plan("nope", plan("t1"))
    with pytest.raises(UnknownRunError, match="nope"):
        await store.save_task("nope", result("t1"))
    with pytest.raises(UnknownRunError, match="nope"):
        await store.acquire_lease("nope", LeaseOwner(), ttl=60)
    with pytest.raises(UnknownRunError, match="nope"):
        await store.request_approval(approval("t1", run_id="nope"))
    assert await store.list_runs() == []


async def test_reads_of_an_unknown_run_are_empty(store: Store) -> None:
    assert await store.load_tasks("nope") == {}
    assert await store.load_events("nope") == []
    assert await store.get_approval("nope", "t1") is None


async def test_update_run_sets_status_answer_error_and_usage(store: Store) -> None:
    await store.create_run(run_record("run-1", created_at=1.0, updated_at=1.0))

    await store.update_run(
        "run-1", status=RunStatus.aborted, error="t2 failed", usage=Usage(input_tokens=7)
    )
    run = await store.get_run("run-1")
    assert (run.status, run.answer, run.error) == (RunStatus.aborted, None, "t2 failed")
    assert run.usage == Usage(input_tokens=7)
    assert run.updated_at > 1.0

    # Without usage the stored usage stays; answer and error are set as given.
    await store.update_run("run-1", status=RunStatus.succeeded, answer="42")
    run = await store.get_run("run-1")
    assert (run.status, run.answer, run.error) == (RunStatus.succeeded, "42", None)
    assert run.usage == Usage(input_tokens=7)


async def test_list_runs_newest_first_with_counts_and_cost(store: Store) -> None:
    # A priced run: each task at the model that answered it, the rest at the run's model.
    await store.create_run(
        run_record("priced", settings={"model": "openai:gpt-4o-mini"}, created_at=3.0)
    )
    await store.save_plan("priced", plan("t1"))
    await store.save_plan("priced", plan("t1", "t2", "t3", "t4"))
    await store.save_task(
        "priced",
        result("t1", model="openai:gpt-4o-mini", usage=Usage(input_tokens=1000, output_tokens=500)),
    )
    await store.save_task(
        "priced",
        result(
            "t2",
            model="anthropic:claude-haiku-4-5",
            usage=Usage(input_tokens=2000, output_tokens=1000),
        ),
    )
    await store.save_task(
        "priced",
        result(
            "t3",
            TaskStatus.failed,
            model="openai:gpt-4o-mini",
            usage=Usage(input_tokens=100),
            output=None,
        ),
    )
    await store.update_run(
        "priced", status=RunStatus.partial, usage=Usage(input_tokens=10000, output_tokens=4000)
    )
    # A local run costs nothing; an unknown model has no price at all.
    await store.create_run(run_record("local", settings={"model": "local"}, created_at=2.0))
    await store.save_task(
        "local", result("t1", model="local:smollm2", usage=Usage(input_tokens=50))
    )
    await store.update_run("local", status=RunStatus.running, usage=Usage(input_tokens=500))
    await store.create_run(run_record("unknown", settings={"model": "mystery-7b"}, created_at=1.0))
    await store.update_run("unknown", status=RunStatus.running, usage=Usage(output_tokens=10))

    runs = await store.list_runs()

    assert [run.run_id for run in runs] == ["priced", "local", "unknown"]
    priced, local, unknown = runs
    assert (priced.tasks, priced.tasks_done, priced.status) == (4, 2, RunStatus.partial)
    assert priced.usage == Usage(input_tokens=10000, output_tokens=4000)
    # t1 $0.00045 + t2 $0.007 + t3 $0.000015 + the rest (6900 in, 2500 out) $0.002535
    assert priced.cost == pytest.approx(0.01)
    assert priced.request == "request of priced"
    assert (local.tasks, local.tasks_done, local.cost) == (0, 1, 0.0)
    assert (unknown.tasks, unknown.tasks_done, unknown.cost) == (0, 0, None)
    assert [run.run_id for run in await store.list_runs(limit=2)] == ["priced", "local"]


# --- plans and tasks --------------------------------------------------------------------


async def test_plan_versions_count_up_and_the_latest_wins(store: Store) -> None:
    await store.create_run(run_record())
    first, second = plan("t1"), plan("t1", "t2")

    assert (await store.get_run("run-1")).plan_usage == Usage()
    assert await store.save_plan("run-1", first, Usage(input_tokens=9)) == 1
    assert await store.save_plan("run-1", second, Usage(input_tokens=30, output_tokens=12)) == 2

    run = await store.get_run("run-1")
    assert (run.plan, run.plan_version) == (second, 2)
    assert run.plan_usage == Usage(input_tokens=30, output_tokens=12)
    assert await store.save_plan("run-1", first) == 3  # usage is optional
    assert (await store.get_run("run-1")).plan_usage == Usage()


async def test_save_task_is_a_delta_and_round_trips_every_field(store: Store) -> None:
    await store.create_run(run_record())
    text = result(
        "t1",
        output="plain text, with ünïcode and\nnewlines",
        attempts=3,
        usage=Usage(input_tokens=120, output_tokens=45),
        latency=1.25,
        model="openai:gpt-4o-mini",
        revisions=1,
        approved=False,
        missing_inputs=["t0"],
        input="## Task\ndo t1",
    )
    structured = result(
        "t2",
        output={"title": "x", "items": [1, 2.5, None, {"nested": True}]},
        model="local",
        approved=True,
    )
    await store.save_task("run-1", text)
    await store.save_task("run-1", structured)
    assert await store.load_tasks("run-1") == {"t1": text, "t2": structured}

    failed = result("t1", TaskStatus.failed, output=None, error="timed out", attempts=4)
    await store.save_task("run-1", failed)  # replaces t1, leaves t2 alone
    assert await store.load_tasks("run-1") == {"t1": failed, "t2": structured}

    waiting = result("t3", TaskStatus.waiting, output=None)
    skipped = result("t4", TaskStatus.skipped, output=None, missing_inputs=["t3"])
    await store.save_task("run-1", waiting)
    await store.save_task("run-1", skipped)
    loaded = await store.load_tasks("run-1")
    assert loaded == {"t1": failed, "t2": structured, "t3": waiting, "t4": skipped}
    assert loaded["t2"].output == {"title": "x", "items": [1, 2.5, None, {"nested": True}]}


async def test_tasks_of_runs_are_kept_apart(store: Store) -> None:
    await store.create_run(run_record("a"))
    await store.create_run(run_record("b"))
    await store.save_task("a", result("t1", output="a's"))
    await store.save_task("b", result("t1", output="b's"))
    assert (await store.load_tasks("a"))["t1"].output == "a's"
    assert (await store.load_tasks("b"))["t1"].output == "b's"


async def test_events_are_appended_in_order(store: Store) -> None:
    await store.create_run(run_record())
    first = [
        TaskStarted(run_id="run-1", task_id="t1", worker="researcher"),
        TaskFinished(
            run_id="run-1",
            task_id="t1",
            worker="researcher",
            output={"k": [1, 2]},
            usage=Usage(input_tokens=3),
            latency=0.5,
            attempts=1,
        ),
    ]
    second = [
        TaskStarted(run_id="run-1", task_id="t2", worker="researcher"),
        TaskFailed(run_id="run-1", task_id="t2", worker="researcher", error="x", policy="skip"),
    ]
    last = [Assembled(run_id="run-1", method="single", answer="done")]

    await store.save_task("run-1", result("t1"), first)
    await store.save_task("run-1", result("t3"))  # no events
    await store.save_task("run-1", result("t2", TaskStatus.failed), second)
    await store.update_run("run-1", status=RunStatus.partial, answer="done", events=last)

    events = await store.load_events("run-1")
    assert [event["type"] for event in events] == [
        "task_started",
        "task_finished",
        "task_started",
        "task_failed",
        "assembled",
    ]
    assert events == as_stored(first + second + last)


async def test_callers_cannot_alias_stored_state(store: Store) -> None:
    await store.create_run(run_record())
    saved = result("t1", output={"k": "v"})
    await store.save_task("run-1", saved)
    saved.output["k"] = "changed after saving"
    loaded = await store.load_tasks("run-1")
    loaded["t1"].output["k"] = "changed after loading"
    assert (await store.load_tasks("run-1"))["t1"].output == {"k": "v"}

    usage = Usage(input_tokens=1)
    await store.update_run("run-1", status=RunStatus.running, usage=usage)
    usage.input_tokens = 99
    (await store.list_runs())[0].usage.input_tokens = 98
    (await store.get_run("run-1")).usage.input_tokens = 97
    assert (await store.get_run("run-1")).usage == Usage(input_tokens=1)

    await store.update_run(
        "run-1",
        status=RunStatus.running,
        events=[TaskStarted(run_id="run-1", task_id="t1", worker="w")],
    )
    (await store.load_events("run-1"))[0]["task_id"] = "changed"
    assert (await store.load_events("run-1"))[0]["task_id"] == "t1"

    requested = approval("t1")
    await store.request_approval(requested)
    requested.instructions = "changed after requesting"
    stored = await store.get_approval("run-1", "t1")
    assert stored is not None and stored.instructions == "do t1"


# --- leases ------------------------------------------------------------------------------


async def test_a_live_lease_keeps_other_owners_out(store: Store) -> None:
    await store.create_run(run_record())
    a, b = LeaseOwner(), LeaseOwner()

    await store.acquire_lease("run-1", a, ttl=60)
    await store.acquire_lease("run-1", a, ttl=60)  # the same owner may take it again
    with pytest.raises(RunLockedError) as raised:
        await store.acquire_lease("run-1", b, ttl=60)
    if isinstance(store, SQLiteStore):
        assert str(a.pid) in str(raised.value)
        assert a.host in str(raised.value)

    await store.release_lease("run-1", b)  # not b's to release: nothing happens
    with pytest.raises(RunLockedError):
        await store.acquire_lease("run-1", b, ttl=60)

    await store.release_lease("run-1", a)
    await store.acquire_lease("run-1", b, ttl=60)
    with pytest.raises(RunLockedError):
        await store.acquire_lease("run-1", a, ttl=60)


async def test_an_expired_lease_can_be_taken(store: Store) -> None:
    await store.create_run(run_record())
    a, b = LeaseOwner(), LeaseOwner()
    await store.acquire_lease("run-1", a, ttl=0.01)
    await asyncio.sleep(0.05)
    await store.acquire_lease("run-1", b, ttl=60)
    with pytest.raises(RunLockedError):
        await store.acquire_lease("run-1", a, ttl=60)


async def test_renewing_extends_the_lease(store: Store) -> None:
    await store.create_run(run_record())
    a, b = LeaseOwner(), LeaseOwner()
    await store.acquire_lease("run-1", a, ttl=0.01)
    await store.renew_lease("run-1", a, ttl=60)
    await store.renew_lease("run-1", b, ttl=60)  # b holds nothing: no effect
    await asyncio.sleep(0.05)
    with pytest.raises(RunLockedError):
        await store.acquire_lease("run-1", b, ttl=60)


async def test_leases_are_per_run(store: Store) -> None:
    await store.create_run(run_record("a"))
    await store.create_run(run_record("b"))
    one, other = LeaseOwner(), LeaseOwner()
    await store.acquire_lease("a", one, ttl=60)
    await store.acquire_lease("b", other, ttl=60)  # a's holder does not lock b

    third = LeaseOwner()
    for run_id in ("a", "b"):
        with pytest.raises(RunLockedError):
            await store.acquire_lease(run_id, third, ttl=60)
    await store.release_lease("a", one)
    await store.acquire_lease("a", third, ttl=60)  # a is free now...
    with pytest.raises(RunLockedError):
        await store.acquire_lease("b", third, ttl=60)  # ...and b still is not


# --- derived status: crashed ------------------------------------------------------------


async def status_everywhere(store: Store, run_id: str) -> set[RunStatus]:
    """The run's status as ``get_run`` and as ``list_runs`` report it."""
    listed = {run.run_id: run.status for run in await store.list_runs()}
    return {(await store.get_run(run_id)).status, listed[run_id]}


async def test_a_running_run_whose_lease_expired_reads_crashed(store: Store) -> None:
    await store.create_run(run_record())
    assert await status_everywhere(store, "run-1") == {RunStatus.running}  # never leased yet
    owner = LeaseOwner()
    await store.acquire_lease("run-1", owner, ttl=60)
    assert await status_everywhere(store, "run-1") == {RunStatus.running}

    await store.acquire_lease("run-1", owner, ttl=0.01)
    await asyncio.sleep(0.05)
    assert await status_everywhere(store, "run-1") == {RunStatus.crashed}

    await store.renew_lease("run-1", owner, ttl=60)  # it was only slow: running again
    assert await status_everywhere(store, "run-1") == {RunStatus.running}


async def test_a_lease_released_with_the_run_still_running_reads_crashed(store: Store) -> None:
    await store.create_run(run_record())
    owner = LeaseOwner()
    await store.acquire_lease("run-1", owner, ttl=60)
    await store.release_lease("run-1", owner)
    assert await status_everywhere(store, "run-1") == {RunStatus.crashed}


async def test_a_settled_run_keeps_its_status_after_its_lease(store: Store) -> None:
    await store.create_run(run_record())
    owner = LeaseOwner()
    await store.acquire_lease("run-1", owner, ttl=60)
    await store.update_run("run-1", status=RunStatus.interrupted)
    await store.release_lease("run-1", owner)
    assert await status_everywhere(store, "run-1") == {RunStatus.interrupted}


async def test_a_running_run_whose_process_is_gone_reads_crashed(store: Store) -> None:
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await process.wait()
    await store.create_run(run_record())
    await store.acquire_lease("run-1", LeaseOwner(pid=process.pid), ttl=3600)
    assert await status_everywhere(store, "run-1") == {RunStatus.crashed}


# --- naming, cancelling and deleting runs --------------------------------------------------


async def test_resolve_run_by_id_prefix_or_last(store: Store) -> None:
    for n, run_id in enumerate(["20260101-aaa111", "20260101-aab222", "20260102-ccc333"]):
        await store.create_run(run_record(run_id, created_at=100.0 + n))

    assert await store.resolve_run("20260101-aaa111") == "20260101-aaa111"
    assert await store.resolve_run("20260101-aaa") == "20260101-aaa111"
    assert await store.resolve_run("20260102") == "20260102-ccc333"
    assert await store.resolve_run("last") == "20260102-ccc333"
    with pytest.raises(AmbiguousRunError) as ambiguous:
        await store.resolve_run("20260101-aa")
    assert "20260101-aaa111" in str(ambiguous.value)
    assert "20260101-aab222" in str(ambiguous.value)
    for ref in ("nope", "", "%", "2026_"):
        with pytest.raises(UnknownRunError) as unknown:
            await store.resolve_run(ref)
        assert not isinstance(unknown.value, AmbiguousRunError)


async def test_resolve_last_in_an_empty_store_is_unknown(store: Store) -> None:
    with pytest.raises(UnknownRunError):
        await store.resolve_run("last")


async def test_a_run_named_like_a_prefix_of_another_is_taken_whole(store: Store) -> None:
    await store.create_run(run_record("abc", created_at=1.0))
    await store.create_run(run_record("abcdef", created_at=2.0))
    assert await store.resolve_run("abc") == "abc"


async def test_cancelling_a_paused_run_ends_it_at_once(store: Store) -> None:
    await store.create_run(run_record())
    await store.update_run("run-1", status=RunStatus.waiting_approval)
    assert await store.cancel_run("run-1") is RunStatus.cancelled
    assert (await store.get_run("run-1")).status is RunStatus.cancelled
    with pytest.raises(RunFinishedError, match="already cancelled"):
        await store.cancel_run("run-1")


async def test_cancelling_a_finished_run_is_refused(store: Store) -> None:
    await store.create_run(run_record())
    await store.update_run("run-1", status=RunStatus.succeeded, answer="done")
    with pytest.raises(RunFinishedError, match="already succeeded"):
        await store.cancel_run("run-1")
    assert (await store.get_run("run-1")).status is RunStatus.succeeded
    with pytest.raises(UnknownRunError):
        await store.cancel_run("nope")


async def test_cancelling_a_running_run_asks_its_process_to_stop(store: Store) -> None:
    await store.create_run(run_record())
    await store.create_run(run_record("other"))
    await store.acquire_lease("run-1", LeaseOwner(), ttl=60)
    assert not await store.cancel_requested("run-1")

    assert await store.cancel_run("run-1") is RunStatus.running
    assert await store.cancel_requested("run-1")
    assert not await store.cancel_requested("other")
    # The executing process settles the status itself when it stops.
    assert (await store.get_run("run-1")).status is RunStatus.running


async def test_cancelling_a_crashed_run_ends_it(store: Store) -> None:
    await store.create_run(run_record())
    owner = LeaseOwner()
    await store.acquire_lease("run-1", owner, ttl=60)
    await store.release_lease("run-1", owner)  # left running: crashed
    assert await store.cancel_run("run-1") is RunStatus.cancelled
    assert (await store.get_run("run-1")).status is RunStatus.cancelled


@pytest.mark.parametrize("directly", [True, False])
async def test_a_cancelled_run_withdraws_its_pending_approvals(
    store: Store, directly: bool
) -> None:
    for run_id in ("run-1", "other"):
        await store.create_run(run_record(run_id))
        await store.request_approval(approval("t1", run_id=run_id))
    await store.request_approval(approval("t2"))
    await store.decide("run-1", "t2", approved=True, note=None)

    if directly:  # paused: cancel_run ends it at once
        await store.update_run("run-1", status=RunStatus.waiting_approval)
        await store.cancel_run("run-1")
    else:  # running: its process records the cancellation
        await store.update_run("run-1", status=RunStatus.cancelled)

    assert [(a.run_id, a.task_id) for a in await store.list_approvals()] == [("other", "t1")]
    withdrawn = await store.get_approval("run-1", "t1")
    assert withdrawn is not None and withdrawn.status is ApprovalStatus.rejected
    assert withdrawn.note == "the run was cancelled"
    kept = await store.get_approval("run-1", "t2")
    assert kept is not None and kept.status is ApprovalStatus.approved
    with pytest.raises(ApprovalError, match="already rejected"):
        await store.decide("run-1", "t1", approved=True, note=None)


async def test_deleting_a_run_removes_everything_about_it(store: Store) -> None:
    for run_id in ("run-1", "keep"):
        await store.create_run(run_record(run_id))
        await store.save_plan(run_id, plan("t1", "t2"))
        await store.save_task(
            run_id, result("t1"), [TaskStarted(run_id=run_id, task_id="t1", worker="w")]
        )
        await store.request_approval(approval("t2", run_id=run_id))
        await store.update_run(run_id, status=RunStatus.waiting_approval)

    await store.delete_run("run-1")

    with pytest.raises(UnknownRunError):
        await store.get_run("run-1")
    assert await store.load_tasks("run-1") == {}
    assert await store.load_events("run-1") == []
    assert await store.get_approval("run-1", "t2") is None
    assert [a.run_id for a in await store.list_approvals()] == ["keep"]
    assert [run.run_id for run in await store.list_runs()] == ["keep"]
    assert set(await store.load_tasks("keep")) == {"t1"}
    assert len(await store.load_events("keep")) == 1
    with pytest.raises(UnknownRunError):
        await store.delete_run("run-1")
    await store.create_run(run_record("run-1"))  # the id is free again, with nothing old
    assert await store.load_tasks("run-1") == {}


async def test_deleting_a_running_run_needs_force(store: Store) -> None:
    await store.create_run(run_record())
    await store.acquire_lease("run-1", LeaseOwner(), ttl=60)
    with pytest.raises(RunLockedError, match="foreman cancel"):
        await store.delete_run("run-1")
    assert (await store.get_run("run-1")).status is RunStatus.running
    await store.delete_run("run-1", force=True)
    with pytest.raises(UnknownRunError):
        await store.get_run("run-1")


# --- prompt-cache tokens --------------------------------------------------------------------


async def test_cache_tokens_are_kept_wherever_tokens_are(store: Store) -> None:
    spent = Usage(input_tokens=10, output_tokens=20, cache_read_tokens=30, cache_write_tokens=40)
    await store.create_run(run_record())
    await store.save_plan("run-1", plan("t1"), spent)
    await store.save_task("run-1", result("t1", usage=spent, model="local"))
    await store.update_run("run-1", status=RunStatus.succeeded, usage=spent + spent)

    run = await store.get_run("run-1")
    assert run.plan_usage == spent
    assert run.usage == spent + spent
    assert (await store.load_tasks("run-1"))["t1"].usage == spent
    assert (await store.list_runs())[0].usage == spent + spent


# --- closing --------------------------------------------------------------------------------


async def test_closing_twice_is_harmless_and_keeps_what_was_written(
    store: Store, tmp_path: Path
) -> None:
    await store.create_run(run_record())
    await store.save_task("run-1", result("t1"))
    await store.aclose()
    await store.aclose()
    if isinstance(store, SQLiteStore):
        assert store._connection is None  # the file is let go of
        reopened = SQLiteStore(store.path)
        try:
            assert set(await reopened.load_tasks("run-1")) == {"t1"}
        finally:
            await reopened.aclose()
    else:  # nothing to let go of: the runs stay readable
        assert set(await store.load_tasks("run-1")) == {"t1"}


# --- approvals ---------------------------------------------------------------------------


async def test_requesting_approval_is_idempotent(store: Store) -> None:
    await store.create_run(run_record())
    first = approval("t1", requested_at=10.0)

    assert await store.request_approval(first) == first
    again = await store.request_approval(approval("t1", instructions="other", requested_at=20.0))
    assert again == first
    assert await store.get_approval("run-1", "t1") == first
    assert await store.list_approvals() == [first]
    assert await store.list_approvals(ApprovalStatus.pending) == [first]
    assert await store.list_approvals(ApprovalStatus.approved) == []


async def test_a_decision_covers_only_the_inputs_that_were_shown(store: Store) -> None:
    await store.create_run(run_record())
    await store.request_approval(approval("t1", inputs='{"inputs": "old"}'))
    await store.decide("run-1", "t1", approved=True, note="ok")

    same = await store.request_approval(approval("t1", inputs='{"inputs": "old"}'))
    assert same.status is ApprovalStatus.approved
    changed = await store.request_approval(approval("t1", inputs='{"inputs": "new"}'))
    assert (changed.status, changed.inputs) == (ApprovalStatus.pending, '{"inputs": "new"}')
    assert await store.list_approvals() == [changed]


async def test_approving_records_the_decision(store: Store) -> None:
    await store.create_run(run_record())
    await store.request_approval(approval("t1"))
    before = time.time()

    decided = await store.decide("run-1", "t1", approved=True, note="looks fine")

    assert (decided.status, decided.note) == (ApprovalStatus.approved, "looks fine")
    assert decided.decided_at is not None and decided.decided_at >= before
    assert await store.get_approval("run-1", "t1") == decided
    assert await store.list_approvals() == []
    assert await store.list_approvals(ApprovalStatus.approved) == [decided]
    assert await store.list_approvals(None) == [decided]
    # Asking again does not reopen a decided request.
    assert await store.request_approval(approval("t1")) == decided

    with pytest.raises(ApprovalError, match=r"already approved \(looks fine\)"):
        await store.decide("run-1", "t1", approved=False, note=None)
    assert await store.get_approval("run-1", "t1") == decided


async def test_rejecting_records_the_reason(store: Store) -> None:
    await store.create_run(run_record())
    await store.request_approval(approval("t1"))

    decided = await store.decide("run-1", "t1", approved=False, note="wrong recipient")

    assert (decided.status, decided.note) == (ApprovalStatus.rejected, "wrong recipient")
    assert await store.list_approvals(ApprovalStatus.rejected) == [decided]
    with pytest.raises(ApprovalError, match="already rejected"):
        await store.decide("run-1", "t1", approved=True, note=None)


async def test_deciding_a_task_without_a_request_says_it_needs_none(store: Store) -> None:
    await store.create_run(run_record())
    with pytest.raises(ApprovalError, match="not waiting for approval") as raised:
        await store.decide("run-1", "t9", approved=True, note=None)
    assert "'t9'" in str(raised.value) and "foreman approvals" in str(raised.value)
    with pytest.raises(ApprovalError, match="not waiting for approval"):
        await store.decide("nope", "t1", approved=True, note=None)


async def test_approvals_are_decided_independently(store: Store) -> None:
    await store.create_run(run_record("run-1"))
    await store.create_run(run_record("run-2"))
    one = await store.request_approval(approval("t1", requested_at=1.0))
    two = await store.request_approval(approval("t2", requested_at=2.0))
    three = await store.request_approval(approval("t3", requested_at=3.0))
    other = await store.request_approval(approval("t1", run_id="run-2", requested_at=4.0))
    assert await store.list_approvals() == [one, two, three, other]

    rejected = await store.decide("run-1", "t2", approved=False, note="no")
    approved = await store.decide("run-1", "t1", approved=True, note=None)

    assert await store.list_approvals() == [three, other]
    assert await store.list_approvals(None) == [approved, rejected, three, other]
    assert (await store.get_approval("run-1", "t3")) == three
    assert (await store.get_approval("run-2", "t1")) == other
    assert approved.note is None and approved.status is ApprovalStatus.approved


# --- SQLite only -------------------------------------------------------------------------


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


async def test_sqlite_takes_over_a_lease_whose_process_is_gone(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await process.wait()
    dead = LeaseOwner(pid=process.pid, host=socket.gethostname())
    assert not dead.is_alive()

    store = SQLiteStore(tmp_path / "runs.db")
    try:
        await store.create_run(run_record())
        await store.acquire_lease("run-1", dead, ttl=3600)
        await store.acquire_lease("run-1", LeaseOwner(), ttl=60)  # no wait for the ttl
        # A live holder on another host cannot be checked, so its lease is respected.
        remote = LeaseOwner(pid=process.pid, host="another-host.invalid")
        await store.create_run(run_record("run-2"))
        await store.acquire_lease("run-2", remote, ttl=3600)
        with pytest.raises(RunLockedError, match=r"another-host\.invalid"):
            await store.acquire_lease("run-2", LeaseOwner(), ttl=60)
    finally:
        await store.aclose()


async def test_sqlite_data_persists_across_instances(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    first, second = SQLiteStore(path), SQLiteStore(path)
    try:
        events = [TaskStarted(run_id="run-1", task_id="t1", worker="researcher")]
        await first.create_run(run_record(settings={"model": "local"}))
        await first.save_plan("run-1", plan("t1", "t2"))
        await first.save_task("run-1", result("t1", output={"a": 1}), events)
        await first.request_approval(approval("t2"))
        owner = LeaseOwner()
        await first.acquire_lease("run-1", owner, ttl=60)

        # Another connection (as another process would have) sees every commit at once.
        run = await second.get_run("run-1")
        assert (run.plan, run.plan_version, run.settings) == (
            plan("t1", "t2"),
            1,
            {"model": "local"},
        )
        assert await second.load_tasks("run-1") == {"t1": result("t1", output={"a": 1})}
        assert await second.load_events("run-1") == as_stored(events)
        assert [a.task_id for a in await second.list_approvals()] == ["t2"]
        with pytest.raises(RunLockedError):
            await second.acquire_lease("run-1", LeaseOwner(), ttl=60)

        await second.decide("run-1", "t2", approved=True, note=None)
        await first.aclose()
        reopened = SQLiteStore(path)
        try:
            approved = await reopened.get_approval("run-1", "t2")
            assert approved is not None and approved.status is ApprovalStatus.approved
            assert (await reopened.list_runs())[0].tasks_done == 1
        finally:
            await reopened.aclose()
    finally:
        await first.aclose()
        await second.aclose()


async def test_sqlite_creates_missing_folders(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "a" / "b" / "runs.db")
    try:
        await store.create_run(run_record())
        assert (tmp_path / "a" / "b" / "runs.db").exists()
    finally:
        await store.aclose()


async def test_sqlite_a_file_that_is_not_a_database_is_reported_as_corrupted(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.db"
    path.write_bytes(b"\x00garbage, certainly not SQLite\xff" * 512)
    store = SQLiteStore(path)
    try:
        with pytest.raises(StoreError, match="corrupted") as raised:
            await store.get_run("run-1")
        assert not isinstance(raised.value, UnknownRunError)
        assert str(path) in str(raised.value)
        with pytest.raises(StoreError, match="corrupted"):
            await store.create_run(run_record())
    finally:
        await store.aclose()


async def test_sqlite_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = SQLiteStore(path)
    await store.create_run(run_record())
    await store.aclose()
    with raw(path) as connection:
        connection.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    connection.close()

    newer = SQLiteStore(path)
    try:
        with pytest.raises(StoreError, match="newer"):
            await newer.get_run("run-1")
    finally:
        await newer.aclose()


async def test_sqlite_a_full_disk_fails_the_write_and_keeps_earlier_checkpoints(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.db"
    store = SQLiteStore(path)
    try:
        await store.create_run(run_record())
        await store.save_plan("run-1", plan("t1", "t2", "t3", "big"))
        kept = [result(f"t{i}", output=f"checkpoint {i}") for i in (1, 2, 3)]
        for task_result in kept:
            await store.save_task(
                "run-1",
                task_result,
                [TaskStarted(run_id="run-1", task_id=task_result.task_id, worker="w")],
            )

        # ``max_page_count`` is per connection, so it is set on the store's own connection:
        # from here on the database cannot grow more than a few pages, as on a full disk.
        def cap(db: sqlite3.Connection) -> None:
            (pages,) = db.execute("PRAGMA page_count").fetchone()
            db.execute(f"PRAGMA max_page_count = {pages + 2}")

        await store._run(cap)
        big = result("big", output="x" * 200_000)
        with pytest.raises(StoreError, match="full") as raised:
            await store.save_task(
                "run-1", big, [TaskStarted(run_id="run-1", task_id="big", worker="w")]
            )
        assert "resume" in str(raised.value)

        expected = {r.task_id: r for r in kept}
        assert await store.load_tasks("run-1") == expected
        assert len(await store.load_events("run-1")) == 3
        # The store is not stuck in a half-done transaction: small writes still go through.
        await store.save_task("run-1", result("t1", output="again"))
        expected["t1"] = result("t1", output="again")
    finally:
        await store.aclose()

    reopened = SQLiteStore(path)
    try:
        assert await reopened.load_tasks("run-1") == expected
        assert (await reopened.get_run("run-1")).plan_version == 1
    finally:
        await reopened.aclose()


async def test_sqlite_a_database_locked_by_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = SQLiteStore(path, busy_timeout=0.1)
    try:
        await store.create_run(run_record())
        holder = raw(path)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            started = time.perf_counter()
            with pytest.raises(StoreError, match="locked"):
                await store.save_task("run-1", result("t1"))
            assert time.perf_counter() - started < 2
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        await store.save_task("run-1", result("t1"))  # fine once the lock is gone
        assert set(await store.load_tasks("run-1")) == {"t1"}
    finally:
        await store.aclose()


async def test_sqlite_storage_grows_linearly_with_tasks(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = SQLiteStore(path)

    def size() -> int:
        with raw(path) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            wal = path.with_name(path.name + "-wal")
            total = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
        connection.close()
        return total

    async def write(start: int, count: int) -> None:
        for i in range(start, start + count):
            output = f"Finding {i}: " + " ".join(f"word{(i * 7 + j) % 97}" for j in range(60))
            task_result = result(
                f"t{i}", output=output, usage=Usage(input_tokens=400, output_tokens=120)
            )
            events = [
                TaskStarted(run_id="run-1", task_id=f"t{i}", worker="researcher"),
                TaskFinished(
                    run_id="run-1",
                    task_id=f"t{i}",
                    worker="researcher",
                    output=output,
                    usage=task_result.usage,
                    latency=0.1,
                    attempts=1,
                ),
            ]
            await store.save_task("run-1", task_result, events)

    try:
        await store.create_run(run_record())
        await store.save_plan("run-1", plan(*(f"t{i}" for i in range(400))))
        empty = size()
        await write(0, 200)
        after_200 = size()
        await write(200, 200)
        after_400 = size()
    finally:
        await store.aclose()

    first = (after_200 - empty) / 200
    second = (after_400 - after_200) / 200
    print(
        f"\nSQLite storage: {first:.0f} bytes/task for tasks 1-200, {second:.0f} for 201-400 "
        f"({after_400 / 400:.0f} bytes/task overall, {after_400} bytes for 400 tasks)"
    )
    assert second / first < 1.3
    assert after_400 / 400 < 2 * (after_200 / 200)


async def test_sqlite_writes_happen_off_the_event_loop(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    threads: set[str] = set()
    try:
        await store.create_run(run_record())
        await store._run(
            lambda db: db.set_trace_callback(lambda _: threads.add(threading.current_thread().name))
        )
        await store.save_plan("run-1", plan("t1"))
        await store.save_task("run-1", result("t1"))
        await store.update_run("run-1", status=RunStatus.succeeded, answer="a")
        await store.load_tasks("run-1")

        assert threads and all(name.startswith("foreman-store") for name in threads)
        assert threading.current_thread().name not in threads
        assert any(t.name.startswith("foreman-store") for t in threading.enumerate())
    finally:
        await store.aclose()


# --- rows that do not parse, and the check that finds them --------------------------------


async def stored_run(path: Path) -> None:
    store = SQLiteStore(path)
    try:
        await store.create_run(run_record(settings={"model": "local"}))
        await store.save_plan("run-1", plan("t1", "t2"))
        await store.save_task(
            "run-1", result("t1"), [TaskStarted(run_id="run-1", task_id="t1", worker="w")]
        )
        await store.request_approval(approval("t2"))
        await store.update_run("run-1", status=RunStatus.waiting_approval)
    finally:
        await store.aclose()


CORRUPTIONS = {
    "task row": ("UPDATE tasks SET result = '{not json'", ["load_tasks"]),
    "status": ("UPDATE runs SET status = 'exploded'", ["get_run", "list_runs"]),
    "settings": ("UPDATE runs SET settings = 'not json at all'", ["get_run", "list_runs"]),
    "settings type": ("UPDATE runs SET settings = '[1, 2]'", ["get_run", "list_runs"]),
    "plan": ("UPDATE plans SET plan = '{\"tasks\": 3}'", ["get_run"]),
    "event": ("UPDATE events SET event = 'nope'", ["load_events"]),
    "approval": ("UPDATE approvals SET approval = '{}'", ["list_approvals", "get_approval"]),
    "lease": ("UPDATE runs SET lease_owner = 'garbage'", ["get_run", "list_runs"]),
    "tokens": ("UPDATE runs SET input_tokens = 'abc'", ["get_run", "list_runs"]),
    "time": ("UPDATE runs SET created_at = 'yesterday'", ["get_run", "list_runs"]),
}


@pytest.mark.parametrize("what", list(CORRUPTIONS))
async def test_sqlite_a_corrupted_row_is_one_clear_error_naming_the_run(
    tmp_path: Path, what: str
) -> None:
    path = tmp_path / "runs.db"
    await stored_run(path)
    sql, readers = CORRUPTIONS[what]
    with raw(path) as connection:
        connection.execute(sql)
    connection.close()

    store = SQLiteStore(path)
    try:
        calls = {
            "load_tasks": lambda: store.load_tasks("run-1"),
            "get_run": lambda: store.get_run("run-1"),
            "list_runs": lambda: store.list_runs(),
            "load_events": lambda: store.load_events("run-1"),
            "list_approvals": lambda: store.list_approvals(),
            "get_approval": lambda: store.get_approval("run-1", "t2"),
        }
        for reader in readers:
            with pytest.raises(CorruptedRunError) as raised:
                await calls[reader]()
            message = str(raised.value)
            assert raised.value.run_id == "run-1"
            assert "Run run-1" in message and "corrupted" in message and str(path) in message
            assert "\n" not in message and "https://" not in message and len(message) < 400
        problems = await store.check()
        assert len(problems) == 1 and problems[0].startswith("run run-1:"), problems

        await store.delete_run("run-1")  # the way out the message suggests
        assert await store.check() == []
    finally:
        await store.aclose()


async def test_sqlite_check_finds_nothing_in_a_healthy_store(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    await stored_run(path)
    store = SQLiteStore(path)
    try:
        assert await store.check() == []
    finally:
        await store.aclose()


# --- opening: read-only, concurrently, and an older schema ---------------------------------


async def test_sqlite_without_create_never_makes_a_file(tmp_path: Path) -> None:
    path = tmp_path / "typo" / "runs.db"
    store = SQLiteStore(path, create=False)
    try:
        assert await store.list_runs() == [] and await store.list_approvals() == []
        for read in (store.get_run("run-1"), store.resolve_run("last"), store.check()):
            with pytest.raises(StoreNotFoundError, match="No run store at") as raised:
                await read
            assert str(path) in str(raised.value)
    finally:
        await store.aclose()
    assert not path.exists() and not path.parent.exists()

    await stored_run(path)  # once it exists, it opens as usual
    store = SQLiteStore(path, create=False)
    try:
        assert (await store.get_run("run-1")).settings == {"model": "local"}
    finally:
        await store.aclose()


async def test_sqlite_two_stores_in_one_process_create_the_schema_once(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    stores = [SQLiteStore(path) for _ in range(6)]
    try:
        await asyncio.gather(*(s.create_run(run_record(f"r{n}")) for n, s in enumerate(stores)))
        assert len(await stores[0].list_runs()) == 6
    finally:
        for s in stores:
            await s.aclose()


async def test_sqlite_a_database_of_the_previous_schema_is_migrated_with_its_data(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    with raw(path) as connection:  # the database as foreman with schema 1 left it
        connection.executescript(MIGRATIONS[0])
        connection.execute("PRAGMA user_version = 1")
        connection.execute(
            "INSERT INTO runs (run_id, request, status, settings, input_tokens, output_tokens,"
            " created_at, updated_at) VALUES ('old', 'an old request', 'partial',"
            ' \'{"model": "local"}\', 100, 50, 1.0, 2.0)'
        )
        connection.execute(
            "INSERT INTO plans (run_id, version, plan, input_tokens, output_tokens, created_at)"
            " VALUES ('old', 1, ?, 7, 3, 1.0)",
            (plan("t1").model_dump_json(),),
        )
        connection.execute(
            "INSERT INTO tasks (run_id, task_id, status, model, input_tokens, output_tokens,"
            " result, updated_at) VALUES ('old', 't1', 'succeeded', 'local', 5, 6, ?, 1.0)",
            (result("t1", usage=Usage(input_tokens=5, output_tokens=6)).model_dump_json(),),
        )
    connection.close()

    store = SQLiteStore(path)
    try:
        run = await store.get_run("old")
        assert (run.request, run.status, run.settings) == (
            "an old request",
            RunStatus.partial,
            {"model": "local"},
        )
        assert run.usage == Usage(input_tokens=100, output_tokens=50)
        assert run.plan == plan("t1") and run.plan_usage == Usage(input_tokens=7, output_tokens=3)
        assert (await store.load_tasks("old"))["t1"].usage.output_tokens == 6
        [summary] = await store.list_runs()
        assert (summary.tasks, summary.tasks_done) == (1, 1)

        cached = Usage(input_tokens=1, cache_read_tokens=9, cache_write_tokens=4)
        await store.update_run("old", status=RunStatus.partial, usage=cached)
        assert (await store.get_run("old")).usage == cached
    finally:
        await store.aclose()
    with raw(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    connection.close()


async def test_sqlite_check_reports_a_damaged_page(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    await stored_run(path)
    with raw(path) as connection:
        (page_size,) = connection.execute("PRAGMA page_size").fetchone()
        (root,) = connection.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'approvals_by_status'"
        ).fetchone()
    connection.close()
    with path.open("r+b") as file:  # scribble over the header of one index page
        file.seek((root - 1) * page_size)
        file.write(b"\xff" * 64)

    store = SQLiteStore(path)
    try:
        problems = await store.check()
        assert problems and all(problem.startswith(str(path)) for problem in problems)
    finally:
        await store.aclose()


# --- approved executions (lifecycle) ------------------------------------------------------


async def test_an_approval_covers_one_started_execution(store: Store) -> None:
    await store.create_run(run_record())
    await store.request_approval(approval("t1"))
    with pytest.raises(ApprovalError):  # pending: nothing approved to start
        await store.start_approved("run-1", "t1")
    await store.decide("run-1", "t1", approved=True, note="go")

    started = await store.start_approved("run-1", "t1")
    assert started.status is ApprovalStatus.approved and started.started_at is not None
    assert not started.may_have_run
    assert await store.get_approval("run-1", "t1") == started  # written at once

    # Started again (the first execution never settled): used up, pending, may have run.
    again = await store.start_approved("run-1", "t1")
    assert (again.status, again.may_have_run) == (ApprovalStatus.pending, True)
    assert (again.started_at, again.decided_at, again.note) == (None, None, None)
    assert await store.list_approvals() == [again]
    with pytest.raises(ApprovalError):
        await store.start_approved("run-1", "t1")

    decided = await store.decide("run-1", "t1", approved=True, note=None)
    assert decided.may_have_run
    restarted = await store.start_approved("run-1", "t1")
    assert restarted.status is ApprovalStatus.approved and restarted.started_at is not None


async def test_starting_an_approval_of_an_unknown_run_or_task_is_an_error(store: Store) -> None:
    await store.create_run(run_record())
    with pytest.raises(UnknownRunError):
        await store.start_approved("nope", "t1")
    with pytest.raises(ApprovalError):
        await store.start_approved("run-1", "t9")
