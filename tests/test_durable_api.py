"""Durable runs through the Python API: resume, leases, approvals, replay, store failures.

Everything runs in one process with scripted models. A "slow" task is a worker call held
open by ``HeldModel`` until the test releases it, so cancellation points are chosen by
events, never by timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from foreman import Orchestrator
from foreman.errors import (
    ConfigError,
    ForemanError,
    ModelError,
    RunFinishedError,
    RunLockedError,
    StoreError,
    UnknownRunError,
)
from foreman.events import (
    ApprovalDecided,
    ApprovalRequested,
    RunFinished,
    RunStarted,
    TaskStarted,
)
from foreman.models.base import ModelRequest, ModelResponse, Usage
from foreman.results import RunStatus, TaskResult, TaskStatus
from foreman.store import Approval, ApprovalStatus, MemoryStore, SQLiteStore, Store
from foreman.testing import ScriptedModel
from foreman.workers import Registry
from foreman.workers.spec import RiskLevel
from helpers import (
    Script,
    TrackingModel,
    index_of,
    instructions_of,
    is_planner,
    is_review,
    is_synthesis,
    of_type,
    payload,
    plan_of,
    task,
    worker,
    worker_requests,
)

TEAM = Registry(
    [
        worker("researcher"),
        worker("writer"),
        worker("editor", risk="medium"),
        worker("deployer", risk="high"),
        worker("launcher", risk="high", on_failure="abort"),
    ]
)

LIMIT = 10.0  # seconds before a stuck test fails instead of hanging


# --- helpers -----------------------------------------------------------------------------


class HeldModel(TrackingModel):
    """A TrackingModel whose worker calls for the ``hold`` tasks wait for ``release``.

    ``calls`` counts worker calls per task id as they start (a held call that is then
    cancelled still counts); ``entered`` is set when a held call has started.
    """

    def __init__(self, script: Any, hold: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(script, **kwargs)
        self.hold = set(hold)
        self.calls: Counter[str] = Counter()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def complete(self, request: ModelRequest) -> ModelResponse:
        key = None
        if not (is_planner(request) or is_synthesis(request) or is_review(request)):
            key = instructions_of(request).removeprefix("do ")
            self.calls[key] += 1
        if key in self.hold and not self.release.is_set():
            self.entered.set()
            await self.release.wait()
        return await super().complete(request)


async def wait_for(condition: Callable[[], Any], limit: float = LIMIT) -> None:
    """Poll an async or sync condition until it holds (fails after ``limit`` seconds)."""
    async with asyncio.timeout(limit):
        while True:
            value = condition()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return
            await asyncio.sleep(0.005)


async def stored_ids(store: Store, run_id: str) -> set[str]:
    return set(await store.load_tasks(run_id))


def responses_usage(model: TrackingModel) -> Usage:
    return sum((response.usage for _, response in model.responses), Usage())


def orchestrator(store: Store, model: ScriptedModel, **kwargs: Any) -> Orchestrator:
    return Orchestrator(TEAM, model=model, store=store, **kwargs)


async def run(
    orch: Orchestrator, plan: Any = None, request: str = "ship it"
) -> tuple[Any, list[Any]]:
    events: list[Any] = []
    async with asyncio.timeout(LIMIT):
        result = await orch.run(request, plan=plan, on_event=events.append)
    return result, events


async def resume(orch: Orchestrator, run_id: str) -> tuple[Any, list[Any]]:
    events: list[Any] = []
    async with asyncio.timeout(LIMIT):
        result = await orch.resume(run_id, on_event=events.append)
    return result, events


class Stores:
    """Stores for one test: ``new()`` is another handle on the same runs.

    For SQLite that is a separate ``SQLiteStore`` on the same file, as another process
    would open; for memory it is the same instance (the only way to share it).
    """

    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        self.path = path
        self._opened: list[Store] = []
        self._memory = MemoryStore()

    def new(self) -> Store:
        store: Store = self._memory if self.kind == "memory" else SQLiteStore(self.path)
        self._opened.append(store)
        return store

    async def close(self) -> None:
        for store in self._opened:
            await store.aclose()


@pytest.fixture(params=["memory", "sqlite"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    opened = Stores(request.param, tmp_path / "runs.db")
    yield opened
    await opened.close()


DIAMOND = plan_of(
    task("t1"),
    task("t2", "researcher", "t1"),
    task("t3", "writer", "t1"),
    task("t4", "writer", "t2", "t3"),
)


# --- resume after cancellation -------------------------------------------------------------


@pytest.mark.parametrize("how", ["leave the stream", "cancel the stream", "cancel run()"])
async def test_cancelled_run_is_interrupted_and_resume_finishes_it(
    stores: Stores, how: str
) -> None:
    store = stores.new()
    model = HeldModel(Script(DIAMOND), hold=["t3"])
    first = orchestrator(store, model)
    events: list[Any] = []

    async def mid_run() -> str:
        """Once t3's call is open and t2 is checkpointed: the run's id."""
        await model.entered.wait()
        run_id = events[0].run_id
        await wait_for(lambda: _has(store, run_id, {"t1", "t2"}))
        return run_id

    async with asyncio.timeout(LIMIT):
        if how == "leave the stream":
            async with contextlib.aclosing(first.stream("write it")) as stream:
                async for event in stream:
                    events.append(event)
                    if isinstance(event, TaskStarted) and event.task_id == "t3":
                        run_id = await mid_run()
                        break
        else:
            if how == "cancel the stream":

                async def consume() -> None:
                    async for event in first.stream("write it"):
                        events.append(event)

                job = asyncio.ensure_future(consume())
            else:
                job = asyncio.ensure_future(first.run("write it", on_event=events.append))
            run_id = await mid_run()
            job.cancel()
            with pytest.raises(asyncio.CancelledError):
                await job

    assert not of_type(events, RunFinished)
    record = await store.get_run(run_id)
    assert record.status is RunStatus.interrupted
    assert record.plan == DIAMOND and record.plan_usage.total_tokens > 0
    stored = await store.load_tasks(run_id)
    assert set(stored) == {"t1", "t2"} and all(r.succeeded for r in stored.values())
    assert model.calls == Counter({"t1": 1, "t2": 1, "t3": 1})

    # A new orchestrator (a new process, for SQLite) continues it; t3 is fast now.
    model.release.set()
    second = orchestrator(stores.new(), model)
    result, resumed = await resume(second, run_id)

    assert result.status is RunStatus.succeeded and result.answer == "FINAL"
    assert resumed[0] == RunStarted(
        run_id=run_id, request="write it", resumed=True, at=resumed[0].at
    )
    assert [e.task_id for e in of_type(resumed, TaskStarted)] == ["t3", "t4"]
    assert model.calls == Counter({"t1": 1, "t2": 1, "t3": 2, "t4": 1})
    assert sum(is_planner(r) for r in model.requests) == 1  # the stored plan was reused
    # Every answered call counts: planning, t1 and t2 before the interruption, t3, t4 and
    # the synthesis after it; and t3's first call, cut short, at its estimated input.
    calls = await store.list_calls(run_id=run_id)
    (cut,) = [c for c in calls if c.status == "interrupted"]
    assert (cut.task_id, cut.estimated, cut.usage.output_tokens) == ("t3", True, 0)
    assert cut.usage.input_tokens > 0
    answered = sum((c.usage for c in calls if c.status == "ok"), Usage())
    assert answered == responses_usage(model)
    assert result.usage == answered + cut.usage and result.calls == len(calls)
    # t3's record counts its cut-short first call too: a task's usage is its ledger rows'.
    t3_rows = [c.usage for c in calls if c.task_id == "t3"]
    assert len(t3_rows) == 2 and result.tasks["t3"].usage == sum(t3_rows, Usage())
    assert result.usage == sum((r.usage for r in result.tasks.values()), record.plan_usage) + sum(
        (resp.usage for req, resp in model.responses if is_synthesis(req)), Usage()
    )
    final = await store.get_run(run_id)
    assert final.status is RunStatus.succeeded and final.usage == result.usage
    assert {k: v.status for k, v in (await store.load_tasks(run_id)).items()} == dict.fromkeys(
        ["t1", "t2", "t3", "t4"], TaskStatus.succeeded
    )


async def _has(store: Store, run_id: str, ids: set[str]) -> bool:
    return ids <= await stored_ids(store, run_id)


async def test_resume_of_a_finished_run_or_an_unknown_one_is_a_clear_error(
    stores: Stores,
) -> None:
    store = stores.new()
    model = HeldModel(Script(DIAMOND))
    result, _ = await run(orchestrator(store, model), DIAMOND)
    assert result.status is RunStatus.succeeded

    with pytest.raises(RunFinishedError, match="already finished") as finished:
        await orchestrator(stores.new(), model).resume(result.run_id)
    assert result.run_id in str(finished.value)
    with pytest.raises(UnknownRunError, match="No run 'nope'"):
        await orchestrator(stores.new(), model).resume("nope")
    assert model.calls == Counter({"t1": 1, "t2": 1, "t3": 1, "t4": 1})  # nothing re-ran
    assert (await store.get_run(result.run_id)).status is RunStatus.succeeded


# --- the lease -----------------------------------------------------------------------------


@pytest.mark.parametrize("stop", ["cancel", "finish"])
async def test_a_run_executing_elsewhere_cannot_be_resumed_until_it_stops(
    stores: Stores, stop: str
) -> None:
    model = HeldModel(Script(DIAMOND), hold=["t3"])
    first_store = stores.new()
    first = orchestrator(first_store, model)
    events: list[Any] = []
    job = asyncio.ensure_future(first.run("write it", plan=DIAMOND, on_event=events.append))
    async with asyncio.timeout(LIMIT):
        await model.entered.wait()
    run_id = events[0].run_id

    other_model = HeldModel(Script(DIAMOND))
    second = orchestrator(stores.new(), other_model)
    with pytest.raises(RunLockedError) as locked:
        await second.resume(run_id)
    message = str(locked.value)
    assert run_id in message and "being executed" in message
    if stores.kind == "sqlite":
        assert f"process {os.getpid()}" in message and "Wait for it to finish" in message
    assert not other_model.requests  # the refused resume did nothing
    assert (await first_store.get_run(run_id)).status is RunStatus.running
    assert not job.done()  # and the executing run was not disturbed

    if stop == "finish":
        model.release.set()
        async with asyncio.timeout(LIMIT):
            assert (await job).status is RunStatus.succeeded
        with pytest.raises(RunFinishedError):  # no longer locked: simply done
            await second.resume(run_id)
        assert not other_model.requests
        return
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert (await first_store.get_run(run_id)).status is RunStatus.interrupted

    result, _ = await resume(second, run_id)
    assert result.status is RunStatus.succeeded
    assert other_model.calls == Counter({"t3": 1, "t4": 1})


async def test_a_run_whose_lease_renewal_fails_once_goes_on() -> None:
    class FlakyRenewals(MemoryStore):
        def __init__(self, released: asyncio.Event) -> None:
            super().__init__()
            self.renewals = 0
            self.released = released

        async def renew_lease(self, run_id: str, owner: Any, ttl: float) -> None:
            self.renewals += 1
            if self.renewals == 1:
                raise StoreError("The run store is locked by another process (busy).")
            await super().renew_lease(run_id, owner, ttl)
            if self.renewals >= 3:
                self.released.set()

    plan = plan_of(task("t1"))
    model = HeldModel(Script(plan), hold=["t1"])
    store = FlakyRenewals(model.release)
    # t1 is held until the lease has been renewed again after the failed renewal.
    result, _ = await run(orchestrator(store, model, lease_seconds=0.03), plan)
    assert result.status is RunStatus.succeeded
    assert store.renewals >= 3


# --- approvals -----------------------------------------------------------------------------


def recorder(verdict: bool | None, *, note: str | None = None, is_async: bool = False):
    """An approval callback returning ``verdict`` and keeping every approval it saw."""
    seen: list[Approval] = []

    def decide(approval: Approval) -> bool | None:
        seen.append(approval.model_copy())
        if note is not None:
            approval.note = note
        return verdict

    async def decide_async(approval: Approval) -> bool | None:
        await asyncio.sleep(0)
        return decide(approval)

    callback = decide_async if is_async else decide
    callback.seen = seen  # type: ignore[attr-defined]
    return callback


def never_asked(approval: Approval) -> bool:
    raise AssertionError(f"asked again about {approval.task_id}")


DEPLOY = plan_of(task("t1"), task("t2", "deployer", "t1"), task("t3", "writer", "t2"))


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_an_approved_task_runs_on_exactly_the_input_that_was_shown(
    stores: Stores, is_async: bool
) -> None:
    store = stores.new()
    model = HeldModel(Script(DEPLOY))
    callback = recorder(True, note="looks safe", is_async=is_async)
    result, events = await run(orchestrator(store, model, approve=callback), DEPLOY)

    assert result.status is RunStatus.succeeded
    [approval] = callback.seen
    [sent] = worker_requests(model, "do t2")
    assert approval.inputs == sent.messages[0].content == result.tasks["t2"].input
    assert payload(sent)["inputs"] == {"t1": "out:do t1"}
    assert (approval.run_id, approval.task_id) == (result.run_id, "t2")
    assert (approval.worker, approval.risk) == ("deployer", RiskLevel.high)
    assert approval.instructions == "do t2" and approval.status is ApprovalStatus.pending
    assert result.tasks["t2"].output == "out:do t2" and result.tasks["t3"].succeeded
    # Asked, decided (and stored) before the task started.
    assert (
        index_of(events, ApprovalRequested, "t2")
        < index_of(events, ApprovalDecided, "t2")
        < index_of(events, TaskStarted, "t2")
    )
    stored = await store.get_approval(result.run_id, "t2")
    assert stored is not None
    assert (stored.status, stored.note) == (ApprovalStatus.approved, "looks safe")


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_a_rejected_task_fails_with_the_reason_and_dependants_get_a_marker(
    stores: Stores, is_async: bool
) -> None:
    store = stores.new()
    model = HeldModel(Script(DEPLOY))
    callback = recorder(False, note="not on a Friday", is_async=is_async)
    result, events = await run(orchestrator(store, model, approve=callback), DEPLOY)

    assert result.status is RunStatus.partial and result.answer.startswith("FINAL")
    assert len(callback.seen) == 1
    rejected = result.tasks["t2"]
    assert rejected.status is TaskStatus.failed and "not on a Friday" in rejected.error
    assert "t2" not in model.calls  # a rejected task never reaches its model
    assert not any(isinstance(e, TaskStarted) and e.task_id == "t2" for e in events)
    [t3] = worker_requests(model, "do t3")
    marker = payload(t3)["inputs"]["t2"]
    assert marker["missing"] is True and "not on a Friday" in marker["reason"]
    stored = await store.get_approval(result.run_id, "t2")
    assert stored is not None
    assert (stored.status, stored.note) == (ApprovalStatus.rejected, "not on a Friday")
    assert (await store.load_tasks(result.run_id))["t2"].status is TaskStatus.failed


async def test_a_rejected_task_under_abort_aborts_the_run_and_stays_rejected(
    stores: Stores,
) -> None:
    store = stores.new()
    plan = plan_of(task("t1"), task("t2", "launcher", "t1"), task("t3", "writer", "t2"))
    model = HeldModel(Script(plan))
    callback = recorder(False, note="too risky")
    result, _ = await run(orchestrator(store, model, approve=callback), plan)

    assert result.status is RunStatus.aborted and result.answer is None
    assert "'t2'" in result.error and "too risky" in result.error
    assert result.tasks["t2"].status is TaskStatus.failed and "t3" not in result.tasks
    assert model.calls == Counter({"t1": 1})
    assert (await store.get_run(result.run_id)).status is RunStatus.aborted

    # The rejection was recorded: resuming does not ask again and aborts the same way.
    again, _ = await resume(orchestrator(stores.new(), model, approve=never_asked), result.run_id)
    assert again.status is RunStatus.aborted and "too risky" in again.error
    assert model.calls == Counter({"t1": 1})


PARKED = plan_of(
    task("t1"),
    task("t2", "deployer", "t1"),
    task("t3", "writer", "t2"),
    task("t4", "researcher"),
    task("t5", "writer", "t4"),
)


@pytest.mark.parametrize("callback", ["none", "defers"])
async def test_an_undecided_task_parks_its_branch_and_the_rest_goes_on(
    stores: Stores, callback: str
) -> None:
    store = stores.new()
    model = HeldModel(Script(PARKED))
    defer = recorder(None)
    first = orchestrator(store, model, approve=defer if callback == "defers" else None)
    result, events = await run(first, PARKED)

    assert result.status is RunStatus.waiting_approval and result.answer is None
    assert result.tasks["t2"].status is TaskStatus.waiting
    assert "t3" not in result.tasks  # held back behind the waiting task
    assert all(result.tasks[t].succeeded for t in ("t1", "t4", "t5"))  # the rest went on
    assert model.calls == Counter({"t1": 1, "t4": 1, "t5": 1})
    assert not any(is_synthesis(r) for r in model.requests)
    assert [e.task_id for e in of_type(events, ApprovalRequested)] == ["t2"]
    assert not of_type(events, ApprovalDecided)
    assert len(defer.seen) == (1 if callback == "defers" else 0)
    assert (await store.get_run(result.run_id)).status is RunStatus.waiting_approval
    stored = await store.load_tasks(result.run_id)
    assert set(stored) == {"t1", "t2", "t4", "t5"} and stored["t2"].status is TaskStatus.waiting
    [pending] = await store.list_approvals()
    assert (pending.run_id, pending.task_id) == (result.run_id, "t2")
    assert pending.inputs == stored["t2"].input

    # Decided from elsewhere (another handle on the store), then resumed.
    decided = await stores.new().decide(result.run_id, "t2", approved=True, note="go")
    assert decided.status is ApprovalStatus.approved
    later = orchestrator(stores.new(), model, approve=never_asked)
    final, resumed = await resume(later, result.run_id)

    assert final.status is RunStatus.succeeded and final.answer == "FINAL"
    assert model.calls == Counter({"t1": 1, "t2": 1, "t3": 1, "t4": 1, "t5": 1})
    assert [e.task_id for e in of_type(resumed, TaskStarted)] == ["t2", "t3"]
    assert not of_type(resumed, ApprovalRequested)
    [sent] = worker_requests(model, "do t2")
    assert sent.messages[0].content == pending.inputs
    assert await store.list_approvals() == []


async def test_several_waiting_tasks_are_decided_independently(stores: Stores) -> None:
    store = stores.new()
    plan = plan_of(
        task("a", "deployer"),
        task("b", "deployer"),
        task("c", "writer", "a"),
        task("d", "writer", "b"),
    )
    model = HeldModel(Script(plan))
    result, _ = await run(orchestrator(store, model), plan)

    assert result.status is RunStatus.waiting_approval
    assert {k: v.status for k, v in result.tasks.items()} == {
        "a": TaskStatus.waiting,
        "b": TaskStatus.waiting,
    }
    pending = await store.list_approvals()
    assert sorted(a.task_id for a in pending) == ["a", "b"]
    assert not model.calls

    await store.decide(result.run_id, "b", approved=False, note="wrong target")
    await store.decide(result.run_id, "a", approved=True, note=None)
    final, _ = await resume(orchestrator(stores.new(), model, approve=never_asked), result.run_id)

    assert final.status is RunStatus.partial
    assert final.tasks["a"].succeeded and final.tasks["c"].succeeded
    assert final.tasks["b"].status is TaskStatus.failed and "wrong target" in final.tasks["b"].error
    assert final.tasks["d"].succeeded  # ran with a missing-input marker for b
    assert model.calls == Counter({"a": 1, "c": 1, "d": 1})
    [d] = worker_requests(model, "do d")
    assert payload(d)["inputs"]["b"]["missing"] is True
    [c] = worker_requests(model, "do c")
    assert payload(c)["inputs"] == {"a": "out:do a"}


async def test_an_approved_task_interrupted_mid_call_is_asked_again_as_it_may_have_run(
    stores: Stores,
) -> None:
    store = stores.new()
    model = HeldModel(Script(DEPLOY), hold=["t2"])
    callback = recorder(True)
    events: list[Any] = []
    job = asyncio.ensure_future(
        orchestrator(store, model, approve=callback).run(
            "ship it", plan=DEPLOY, on_event=events.append
        )
    )
    async with asyncio.timeout(LIMIT):
        await model.entered.wait()
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    run_id = events[0].run_id
    assert (await store.get_run(run_id)).status is RunStatus.interrupted
    assert set(await store.load_tasks(run_id)) == {"t1"}  # t2 never settled
    approval = await store.get_approval(run_id, "t2")
    assert approval is not None and approval.status is ApprovalStatus.approved

    model.release.set()
    again = recorder(True)
    final, resumed = await resume(orchestrator(stores.new(), model, approve=again), run_id)
    assert final.status is RunStatus.succeeded
    assert [a.may_have_run for a in callback.seen + again.seen] == [False, True]
    assert [e.may_have_run for e in of_type(resumed, ApprovalRequested)] == [True]
    assert model.calls == Counter({"t1": 1, "t2": 2, "t3": 1})


async def test_an_approval_covers_only_the_inputs_that_were_shown(stores: Stores) -> None:
    store = stores.new()
    flaky = Script(DEPLOY, tasks={"do t1": [ModelError("bad request"), "fresh t1"]})
    model = HeldModel(flaky)
    result, _ = await run(orchestrator(store, model), DEPLOY)
    assert result.tasks["t1"].status is TaskStatus.failed
    assert result.tasks["t2"].status is TaskStatus.waiting
    [shown] = await store.list_approvals()
    assert json.loads(shown.inputs)["inputs"]["t1"]["missing"] is True

    await store.decide(result.run_id, "t2", approved=True, note=None)
    final, resumed = await resume(orchestrator(stores.new(), model), result.run_id)

    # t1 ran again and its new output changed t2's inputs: the approval given for the old
    # inputs does not cover them, so t2 did not run and is asked again with what it gets now.
    assert final.tasks["t1"].output == "fresh t1"
    assert worker_requests(model, "do t2") == []
    assert final.status is RunStatus.waiting_approval
    assert final.tasks["t2"].status is TaskStatus.waiting
    assert [e.task_id for e in of_type(resumed, ApprovalRequested)] == ["t2"]
    [asked] = await store.list_approvals()
    assert asked.task_id == "t2" and "fresh t1" in asked.inputs and asked.inputs != shown.inputs


MIXED = plan_of(task("t1", "editor"), task("t2", "deployer"), task("t3", "researcher"))


@pytest.mark.parametrize("auto", [None, "medium"])
async def test_auto_approve_medium_skips_the_question_for_medium_only(auto: str | None) -> None:
    store = MemoryStore()
    model = HeldModel(Script(MIXED))
    callback = recorder(True)
    result, events = await run(
        orchestrator(store, model, approve=callback, auto_approve=auto), MIXED
    )

    assert result.status is RunStatus.succeeded
    asked = ["t2"] if auto == "medium" else ["t1", "t2"]
    assert sorted(a.task_id for a in callback.seen) == asked
    assert sorted(e.task_id for e in of_type(events, ApprovalRequested)) == asked
    assert [a.risk for a in sorted(callback.seen, key=lambda a: a.task_id)][-1] is RiskLevel.high
    assert model.calls == Counter({"t1": 1, "t2": 1, "t3": 1})
    recorded = await store.list_approvals(None)
    assert sorted(a.task_id for a in recorded) == asked


@pytest.mark.parametrize("value", ["high", RiskLevel.high, "urgent"])
def test_auto_approve_high_or_unknown_is_a_config_error(value: Any) -> None:
    with pytest.raises(ConfigError, match="auto_approve"):
        Orchestrator(TEAM, model=ScriptedModel([]), auto_approve=value)


async def test_a_low_risk_worker_never_asks(stores: Stores) -> None:
    store = stores.new()
    model = HeldModel(Script(DIAMOND))
    result, events = await run(orchestrator(store, model, approve=never_asked), DIAMOND)
    assert result.status is RunStatus.succeeded
    assert not of_type(events, ApprovalRequested) and not of_type(events, ApprovalDecided)
    assert await store.list_approvals(None) == []


# --- replay --------------------------------------------------------------------------------


async def _snapshot(store: Store, run_id: str) -> tuple[Any, ...]:
    """The run's state; its books are left out: a replay's calls join the ledger."""
    record = await store.get_run(run_id)
    tasks = {k: v.model_dump() for k, v in (await store.load_tasks(run_id)).items()}
    books = {"usage", "cost_usd", "unpriced", "calls"}
    return record.model_dump(exclude=books), tasks, await store.load_events(run_id)


async def _replay_calls(store: Store, run_id: str) -> list[Any]:
    return [c for c in await store.list_calls(run_id=run_id) if c.purpose == "replay"]


async def test_replay_reruns_one_task_on_its_recorded_input_without_touching_the_run(
    stores: Stores,
) -> None:
    store = stores.new()
    plan = plan_of(task("t1"), task("t2", "writer", "t1"))
    model = HeldModel(Script(plan, tasks={"do t2": ["first", "second"]}))
    result, _ = await run(orchestrator(store, model), plan)
    assert result.tasks["t2"].output == "first"
    before = await _snapshot(store, result.run_id)

    replayer = orchestrator(stores.new(), model)
    replayed = await replayer.replay(result.run_id, "t2")

    assert isinstance(replayed, TaskResult)
    assert (replayed.task_id, replayed.worker) == ("t2", "writer")
    assert replayed.status is TaskStatus.succeeded and replayed.output == "second"
    assert replayed.attempts == 1 and replayed.usage.total_tokens > 0
    last = model.requests[-1]
    assert last.messages[0].content == result.tasks["t2"].input == replayed.input
    assert last.system == "You are the writer worker."
    assert model.calls == Counter({"t1": 1, "t2": 2})
    assert await _snapshot(store, result.run_id) == before
    # The replay was paid for: it is in the run's ledger and books, under its own purpose.
    (call,) = await _replay_calls(store, result.run_id)
    assert (call.parent, call.worker, call.status) == ("replay:t2", "writer", "ok")
    assert call.usage == replayed.usage
    after = await store.get_run(result.run_id)
    assert after.usage == result.usage + replayed.usage and after.calls == result.calls + 1


async def test_replay_with_another_model(stores: Stores) -> None:
    store = stores.new()
    plan = plan_of(task("t1"), task("t2", "writer", "t1"))
    model = HeldModel(Script(plan))
    result, _ = await run(orchestrator(store, model), plan)
    before = await _snapshot(store, result.run_id)
    calls_before = len(model.requests)

    other = ScriptedModel(["from the other model"], name="other")
    replayer = Orchestrator(TEAM, model=model, models={"other": other}, store=stores.new())
    replayed = await replayer.replay(result.run_id, "t2", model="other")

    assert replayed.output == "from the other model" and replayed.model == "other"
    assert [r.messages[0].content for r in other.requests] == [result.tasks["t2"].input]
    assert len(model.requests) == calls_before  # the run's model was not called
    assert await _snapshot(store, result.run_id) == before
    assert [c.model for c in await _replay_calls(store, result.run_id)] == ["other"]


async def test_replay_of_a_task_that_never_ran_or_does_not_exist_is_a_clear_error(
    stores: Stores,
) -> None:
    store = stores.new()
    plan = plan_of(
        task("t1"),
        task("t2", "deployer", "t1"),  # waits for approval
        task("t3", "writer", "t2"),  # held back behind it
        task("t4", "deployer"),  # rejected
    )
    model = HeldModel(Script(plan))

    def t4_rejected(approval: Approval) -> bool | None:
        return False if approval.task_id == "t4" else None

    result, _ = await run(orchestrator(store, model, approve=t4_rejected), plan)
    assert result.status is RunStatus.waiting_approval
    assert result.tasks["t4"].status is TaskStatus.failed
    before = await _snapshot(store, result.run_id)
    replayer = orchestrator(stores.new(), model)

    for never_ran in ("t2", "t3", "t4"):
        with pytest.raises(ForemanError, match="never ran") as raised:
            await replayer.replay(result.run_id, never_ran)
        assert f"'{never_ran}'" in str(raised.value)
        assert f"foreman resume {result.run_id}" in str(raised.value)
    with pytest.raises(ForemanError, match="has no task 'nope'") as unknown:
        await replayer.replay(result.run_id, "nope")
    assert "['t1', 't2', 't3', 't4']" in str(unknown.value)
    with pytest.raises(UnknownRunError):
        await replayer.replay("no-such-run", "t1")
    assert model.calls == Counter({"t1": 1})  # no deploy ever reached the model
    assert await _snapshot(store, result.run_id) == before


# --- a store that cannot write -------------------------------------------------------------


class DiskFills:
    """Mixed into a store: while ``full``, the write of the ``fail_at``-th checkpoint raises
    StoreError (the engine writes checkpoints in groups, through ``save_checkpoints``)."""

    fail_at = 3

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.full = True
        self.saves: list[str] = []

    async def save_checkpoints(self, run_id: str, checkpoints: Sequence[Any], calls=()):
        before = len(self.saves)
        self.saves.extend(checkpoint.result.task_id for checkpoint in checkpoints)
        if self.full and before < self.fail_at <= len(self.saves):
            raise StoreError("The run store could not be written: the disk is full.")
        await super().save_checkpoints(run_id, checkpoints, calls)  # type: ignore[misc]


class FullSQLite(DiskFills, SQLiteStore):
    pass


class FullMemory(DiskFills, MemoryStore):
    pass


CHAIN = plan_of(
    task("t1"),
    task("t2", "researcher", "t1"),
    task("t3", "writer", "t2"),
    task("t4", "writer", "t3"),
)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_a_failing_store_stops_the_run_and_resume_continues_from_its_checkpoints(
    kind: str, tmp_path: Path
) -> None:
    store = FullMemory() if kind == "memory" else FullSQLite(tmp_path / "runs.db")
    model = HeldModel(Script(CHAIN))
    events: list[Any] = []
    try:
        with pytest.raises(StoreError, match="disk is full"):
            async with asyncio.timeout(LIMIT):
                await orchestrator(store, model).run("write it", plan=CHAIN, on_event=events.append)
        [finished] = of_type(events, RunFinished)  # not a silent partial run: a failed one
        assert (
            finished.result.status is RunStatus.failed and "disk is full" in finished.result.error
        )
        run_id = events[0].run_id
        assert store.saves == ["t1", "t2", "t3"]
        assert model.calls == Counter({"t1": 1, "t2": 1, "t3": 1})
        stored = await store.load_tasks(run_id)
        assert set(stored) == {"t1", "t2"} and all(r.succeeded for r in stored.values())
        assert stored["t2"].output == "out:do t2"
        assert not (await store.get_run(run_id)).status.finished

        store.full = False
        final, _ = await resume(orchestrator(store, model), run_id)
        assert final.status is RunStatus.succeeded
        assert model.calls == Counter({"t1": 1, "t2": 1, "t3": 2, "t4": 1})
        assert store.saves == ["t1", "t2", "t3", "t3", "t4"]
    finally:
        await store.aclose()


# --- storage is a delta --------------------------------------------------------------------


class SpySQLite(SQLiteStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.saves: list[tuple[TaskResult, list[Any]]] = []

    async def save_checkpoints(self, run_id: str, checkpoints: Sequence[Any], calls=()):
        self.saves.extend((c.result, list(c.events)) for c in checkpoints)
        await super().save_checkpoints(run_id, checkpoints, calls)


async def test_each_settled_task_is_one_write_of_that_task_only(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = SpySQLite(path)
    model = HeldModel(Script(PARKED))
    try:
        result, events = await run(orchestrator(store, model, concurrency=1), PARKED)
        assert result.status is RunStatus.waiting_approval
        settled = set(result.tasks)
        assert settled == {"t1", "t2", "t4", "t5"}
        _check_writes(store.saves, settled)
        assert _rows(path, result.run_id) == len(settled)

        # The stored event log is the emitted events, each written once.
        stored = await store.load_events(result.run_id)
        assert stored == [json.loads(e.model_dump_json()) for e in events]

        # Resuming writes only what settles now: t2 (approved) and t3.
        await store.decide(result.run_id, "t2", approved=True, note=None)
        store.saves.clear()
        final, resumed = await resume(orchestrator(store, model, concurrency=1), result.run_id)
        assert final.status is RunStatus.succeeded
        _check_writes(store.saves, {"t2", "t3"})
        assert _rows(path, result.run_id) == len(PARKED.tasks)
        assert await store.load_events(result.run_id) == stored + [
            json.loads(e.model_dump_json()) for e in resumed
        ]
    finally:
        await store.aclose()


def _check_writes(saves: list[tuple[TaskResult, list[Any]]], expected: set[str]) -> None:
    assert sorted(result.task_id for result, _ in saves) == sorted(expected)
    for result, events in saves:
        assert isinstance(result, TaskResult)
        about = {e.task_id for e in events if hasattr(e, "task_id")}
        assert about == {result.task_id}, (result.task_id, [e.type for e in events])


def _rows(path: Path, run_id: str) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        (count,) = db.execute("SELECT COUNT(*) FROM tasks WHERE run_id = ?", (run_id,)).fetchone()
    return count


async def test_a_settled_task_is_announced_only_after_its_checkpoint() -> None:
    class Spy(MemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.saved: list[str] = []

        async def save_checkpoints(self, run_id, checkpoints, calls=()):
            await super().save_checkpoints(run_id, checkpoints, calls)
            self.saved.extend(checkpoint.result.task_id for checkpoint in checkpoints)

    store = Spy()
    failing = Script(DEPLOY, tasks={"do t1": ModelError("bad request")})
    unsaved_when_announced: list[str] = []

    def on_event(event) -> None:
        if event.type in ("task_finished", "task_failed", "task_skipped"):
            if event.task_id not in store.saved:
                unsaved_when_announced.append(event.task_id)

    orchestrator = Orchestrator(
        TEAM, model=ScriptedModel(failing), store=store, approve=lambda approval: True
    )
    result = await orchestrator.run("x", plan=DEPLOY, on_event=on_event)

    assert result.tasks and store.saved
    assert unsaved_when_announced == []
