"""A call's ``started`` row rides with the next group write, or is written on its own once
``started_write_window`` has passed: fewer transactions, and a call in flight still
reaches the store."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from foreman import Orchestrator
from foreman.errors import ConfigError
from foreman.events import Event
from foreman.ledger.recorder import CallLedger
from foreman.ledger.records import CallPurpose, CallStatus
from foreman.models.base import Message, ModelRequest, ModelResponse, Usage
from foreman.store import Checkpoint, SQLiteStore
from foreman.testing import ScriptedModel
from helpers import plan_of, task, worker

TEAM = [worker("researcher")]


class CountingSQLite(SQLiteStore):
    """Counts the group writes that carry ledger rows and no checkpoint."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls_only = 0
        self.wrote_calls = asyncio.Event()

    async def save_checkpoints(
        self, run_id: str, checkpoints: Sequence[Checkpoint], calls: Sequence[Any] = ()
    ) -> None:
        await super().save_checkpoints(run_id, checkpoints, calls)
        if not checkpoints and calls:
            self.calls_only += 1
            self.wrote_calls.set()


class Holding(ScriptedModel):
    """Answers at once, except the call of task ``slow``: it first runs ``hold()``."""

    def __init__(self) -> None:
        super().__init__(lambda r: "done")
        self.hold: Any = None

    async def complete(self, request: ModelRequest) -> ModelResponse:
        if "do slow" in request.messages[-1].content and self.hold is not None:
            await self.hold()
        return await super().complete(request)


async def statuses(store: SQLiteStore, task_id: str) -> list[CallStatus]:
    return [c.status for c in await store.list_calls(task_id=task_id)]


async def test_a_started_row_rides_with_the_next_checkpoint(tmp_path: Path) -> None:
    store = CountingSQLite(tmp_path / "runs.db")
    model = Holding()
    quick_done = asyncio.Event()
    seen: list[list[CallStatus]] = []

    async def hold() -> None:
        await quick_done.wait()  # quick's checkpoint has committed: it took slow's row
        seen.append(await statuses(store, "slow"))

    def on_event(event: Event) -> None:
        if event.type == "task_finished" and event.task_id == "quick":
            quick_done.set()

    model.hold = hold
    # A window far longer than the test: only a checkpoint can have written the row.
    orchestrator = Orchestrator(
        TEAM, model=model, store=store, assembly="concat", started_write_window=3600
    )
    try:
        plan = plan_of(task("quick"), task("slow"))
        await orchestrator.run("x", plan=plan, on_event=on_event)
        assert seen == [[CallStatus.started]]
        assert store.calls_only == 0
    finally:
        await store.aclose()


async def test_a_call_in_flight_alone_is_written_once_the_window_passes(
    tmp_path: Path,
) -> None:
    store = CountingSQLite(tmp_path / "runs.db")
    model = Holding()
    seen: list[list[CallStatus]] = []

    async def hold() -> None:
        # Nothing else runs: no checkpoint comes, so the window's own write must.
        async with asyncio.timeout(30):
            await store.wrote_calls.wait()
        seen.append(await statuses(store, "slow"))

    model.hold = hold
    orchestrator = Orchestrator(
        TEAM, model=model, store=store, assembly="concat", started_write_window=0.01
    )
    try:
        plan = plan_of(task("first"), task("slow", "researcher", "first"))
        await orchestrator.run("x", plan=plan)
        assert seen == [[CallStatus.started]]
        assert store.calls_only == 1
        assert await statuses(store, "slow") == [CallStatus.ok]
    finally:
        await store.aclose()


async def test_calls_that_settle_within_the_window_cost_no_write_of_their_own(
    tmp_path: Path,
) -> None:
    store = CountingSQLite(tmp_path / "runs.db")
    orchestrator = Orchestrator(
        TEAM,
        model=ScriptedModel(lambda r: "done"),
        store=store,
        assembly="concat",
        started_write_window=3600,
    )
    try:
        chain = [task("c1"), *(task(f"c{i}", "researcher", f"c{i - 1}") for i in range(2, 6))]
        result = await orchestrator.run("x", plan=plan_of(*chain))
        assert store.calls_only == 0
        calls = await store.list_calls(run_id=result.run_id)
        assert [c.status for c in calls] == [CallStatus.ok] * 5
    finally:
        await store.aclose()


def test_a_negative_window_is_refused() -> None:
    with pytest.raises(ConfigError, match="started_write_window"):
        Orchestrator(TEAM, model=ScriptedModel(lambda r: "done"), started_write_window=-1)


def test_a_ledger_for_a_store_that_does_not_survive_the_process_takes_settled_calls_only() -> None:
    ids = iter(["c1", "c2"])
    books = CallLedger("run", write_started=False, new_id=lambda: next(ids))
    request = ModelRequest(messages=[Message(role="user", content="x" * 12)])
    answer = ModelResponse(text="ok", model="m", usage=Usage(input_tokens=3))
    first = books.scope(CallPurpose.task, task_id="t1").open("m", request)
    books.scope(CallPurpose.task, task_id="t2").open("m", request)
    first.close("ok", response=answer)
    assert [(r.call_id, r.status) for r in books.take()] == [("c1", CallStatus.ok)]
    assert books.records["c2"].status is CallStatus.started  # still on the books
    assert books.usage.input_tokens == 3 + 3  # the one in flight at its estimate
    books.interrupt_open()
    assert [(r.call_id, r.status) for r in books.take()] == [("c2", CallStatus.interrupted)]


async def test_a_burst_of_started_calls_is_written_in_bounded_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No write takes more than ``STARTED_ROWS_PER_WRITE`` started rows (a wide fan-out's
    would hold every checkpoint behind it), and every call still reaches the store."""
    from foreman.engine import journal

    monkeypatch.setattr(journal, "STARTED_ROWS_PER_WRITE", 3)
    sizes: list[int] = []
    release = asyncio.Event()  # the calls answer once all ten started rows are on disk

    class Sizing(SQLiteStore):
        async def save_checkpoints(
            self, run_id: str, checkpoints: Sequence[Checkpoint], calls: Sequence[Any] = ()
        ) -> None:
            started = sum(c.status is CallStatus.started for c in calls)
            await super().save_checkpoints(run_id, checkpoints, calls)
            sizes.append(started)
            if sum(sizes) == 10:
                release.set()

    class Waiting(ScriptedModel):
        async def complete(self, request: ModelRequest) -> ModelResponse:
            await release.wait()
            return await super().complete(request)

    store = Sizing(tmp_path / "runs.db")
    orchestrator = Orchestrator(
        TEAM, model=Waiting(lambda r: "done"), store=store, assembly="concat",
        started_write_window=0, concurrency=None,
    )  # fmt: skip
    plan = plan_of(*[task(f"t{i}", "researcher") for i in range(10)])
    try:
        result = await asyncio.wait_for(orchestrator.run("go", plan=plan), 10)
        assert result.status == "succeeded"
        assert max(sizes) == 3 and sum(sizes) == 10
        calls = await store.list_calls()
        assert len(calls) == 10 and {c.status for c in calls} == {CallStatus.ok}
    finally:
        await store.aclose()
