"""Checkpointing one run: a task's result is stored before its dependants may start.

Events are buffered in memory and written in the same transaction as the next checkpoint,
so the stored log never runs ahead of the state. Checkpoints are group-committed: a task
that settles queues its checkpoint and waits; one flusher writes everything queued (task
results, their events, and every ledger record not yet written, ``started`` calls
included) in one ``Store.save_checkpoints`` call, then wakes every waiter. Tasks that
settle while a write is in flight go together in the next one, so a wide fan-out costs a
handful of transactions instead of one per task, and each waiter still returns only once
its own checkpoint committed (or raises the write's error).

The journal also holds the run's lease, renewed in the background while the run is alive,
so a second process cannot execute the same run at the same time, and polls the run's
cancel flag (``foreman cancel`` from another process): when it is set, the journal sets
``cancelled`` and cancels the task executing the run, which then records ``cancelled``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from foreman.errors import StoreError
from foreman.ledger.recorder import CallLedger, OnCall
from foreman.ledger.records import CallRecord, CallStatus
from foreman.models.base import Usage
from foreman.plan.revise import PlanChanges
from foreman.plan.schema import Plan
from foreman.results import RunStatus, TaskResult
from foreman.store.base import Checkpoint, LeaseOwner, Store
from foreman.tools.records import ToolTurnRecord

T = TypeVar("T")

LEASE_SECONDS = 30.0
CANCEL_POLL_SECONDS = 1.0
#: Longest a started call's row waits for a group write to ride with (seconds). A call
#: that starts while nothing is being written would otherwise cost a transaction of its
#: own; most of the time a checkpoint comes first, and takes the row along. The price: a
#: process killed within this window of a call's start leaves no row for that call
#: (docs/benchmarks.md). Provider calls take seconds, so the window is a small fraction.
STARTED_WRITE_WINDOW = 0.02
#: Most ``started`` call rows one group write takes; the rest follow in the next writes
#: (or are written settled, if their calls settle first). A wide fan-out starts a thousand
#: calls at once, and one write of all their rows kept every task that settled meanwhile
#: waiting for it (60-90 ms on the writer thread, docs/benchmarks.md).
STARTED_ROWS_PER_WRITE = 128


class RunJournal:
    """Writes one run's checkpoints and events to a store, and keeps its lease."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        *,
        spent: Usage | None = None,
        keep_prompts: bool = True,
        on_call: OnCall | None = None,
        lease_seconds: float = LEASE_SECONDS,
        cancel_poll: float = CANCEL_POLL_SECONDS,
        started_window: float = STARTED_WRITE_WINDOW,
        parent_ledger: CallLedger | None = None,
    ) -> None:
        self.store = store
        #: Tokens earlier executions of the run spent (their ledger rows).
        self.spent_before = spent or Usage()
        #: This execution's call attempts; written with each group of checkpoints, and as
        #: calls start (to a durable store), so a crash cannot hide a call in flight.
        self.ledger = CallLedger(
            run_id,
            keep_prompts=keep_prompts,
            write_started=store.durable,
            on_start=self._write_calls_soon if store.durable else None,
            on_end=on_call,
            parent=parent_ledger,
        )
        self._queue: list[tuple[Checkpoint, asyncio.Future[None]]] = []
        self._calls_due = False
        self.started_window = started_window
        self._calls_timer: asyncio.TimerHandle | None = None
        self._flusher: asyncio.Task[None] | None = None
        self.run_id = run_id
        self.owner = LeaseOwner()
        self.lease_seconds = lease_seconds
        self.cancel_poll = cancel_poll
        #: Set when the run stopped because someone asked it to (``Store.cancel_run``).
        self.cancelled = False
        self._events: list[Any] = []
        self._renewer: asyncio.Task[None] | None = None
        #: This execution holds the run's lease (``acquire``).
        self.leased = False
        self._executing: asyncio.Task[Any] | None = None

    def record(self, event: Any) -> None:
        """Keep an event for the next write (cheap: no I/O here)."""
        self._events.append(event)

    @property
    def spent(self) -> Usage:
        """What the run has spent: earlier executions, then every call of this one (calls
        in flight at their estimate), so even an interrupted run reports what it cost."""
        return self.spent_before + self.ledger.usage

    async def checkpoint(self, result: TaskResult) -> None:
        """Queue ``result`` (with the events so far) for the next group write, and wait
        until it has committed. A waiter cancelled meanwhile does not withdraw it: the
        task did settle, and the write keeps the stored log in order."""
        events, self._events = self._events, []
        committed = asyncio.get_running_loop().create_future()
        self._queue.append((Checkpoint(result, events), committed))
        self._flush_soon()
        await committed

    async def save_plan(self, plan: Plan, usage: Usage) -> None:
        await self._save(lambda calls: self.store.save_plan(self.run_id, plan, usage, calls=calls))

    async def save_revision(
        self, plan: Plan, usage: Usage, *, reason: str, changes: PlanChanges
    ) -> int:
        """Store a revised plan as the run's next version; returns its number."""
        return await self._save(
            lambda calls: self.store.save_revision(
                self.run_id, plan, usage, calls, reason=reason, changes=changes
            )
        )

    async def save_tool_turn(self, record: ToolTurnRecord) -> None:
        """Store an answered turn of a tool loop with the ledger records so far (its own
        call's among them), so resume neither asks it again nor loses what it cost."""
        await self._save(lambda calls: self.store.save_tool_turn(record, calls))

    async def _save(self, write: Callable[[list[CallRecord]], Awaitable[T]]) -> T:
        await self._settle()
        calls = self.ledger.take()
        try:
            return await write(calls)
        except BaseException:  # cut short (Ctrl-C, a full disk): the run's last write takes them
            self.ledger.unwritten(calls)
            raise

    def _write_calls_soon(self) -> None:
        """Have the calls that just started written with the next group write, or on their
        own once ``started_window`` has passed: never a wait before a call, and one write
        for all that started together. One timer serves every call that starts meanwhile,
        so no row waits longer than the window."""
        if self.started_window <= 0:
            self._write_started()
        elif self._calls_timer is None:
            loop = asyncio.get_running_loop()
            self._calls_timer = loop.call_later(self.started_window, self._write_started)

    def _write_started(self) -> None:
        self._calls_timer = None
        if self.ledger.has_unwritten:  # else a group write took them meanwhile
            self._calls_due = True
            self._flush_soon()

    def _stop_timer(self) -> None:
        if self._calls_timer is not None:
            self._calls_timer.cancel()
            self._calls_timer = None

    def _flush_soon(self) -> None:
        """Start the flusher at the next turn of the loop (so everything that settles in
        this turn joins the group), unless it is running: then it picks the queue up when
        its current write is done."""
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        while self._queue or self._calls_due:
            batch, self._queue, self._calls_due = self._queue, [], False
            calls: list[CallRecord] = []
            try:
                calls = self.ledger.take(started=STARTED_ROWS_PER_WRITE)
                more = self.ledger.has_unwritten  # started rows left for the next write
                await self.store.save_checkpoints(
                    self.run_id, [checkpoint for checkpoint, _ in batch], calls
                )
                self._calls_due = self._calls_due or more
            except BaseException as exc:
                # Not stored: the run's next write books the calls, and every task of the
                # group fails with the error. Started calls alone fail nobody: the next
                # write takes them (and fails loudly if the store is down).
                self.ledger.unwritten(calls)
                if isinstance(exc, asyncio.CancelledError):  # the loop is shutting down
                    batch += self._queue
                    self._queue = []
                _settle_all(batch, exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
            else:
                _settle_all(batch, None)

    async def update(
        self,
        status: RunStatus,
        *,
        answer: str | None = None,
        error: str | None = None,
        last: Any = None,
    ) -> None:
        """Store the run's status with the events so far (``last`` after them: the run's
        last event) and every ledger record not written yet. If the write fails, the
        records and events are kept for the next write (``last`` is not: it told an end
        that was not stored)."""
        kept, self._events = self._events, []
        events = kept if last is None else [*kept, last]
        if status is not RunStatus.running:  # stopping: calls cut short are on the books
            self.ledger.interrupt_open()
            self._stop_timer()  # this write takes every row
            # No cancel poll may stop the run once its end is being written: a `foreman
            # cancel` landing now would cancel a run that is already over.
            await self._stop_renewing()
        await self._settle()
        calls = self.ledger.take()
        try:
            await self.store.update_run(
                self.run_id,
                status=status,
                answer=answer,
                error=error,
                usage=self.spent,
                events=events,
                calls=calls,
            )
        except BaseException:  # not stored: the run's next write (its failure) takes them
            self.ledger.unwritten(calls)
            self._events[:0] = kept
            raise

    async def _settle(self) -> None:
        """Let the group writes queued so far land first: a write of the run's own never
        overtakes them (their failures are their waiters' to report)."""
        while self._flusher is not None and not self._flusher.done():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(self._flusher)

    async def acquire(self) -> None:
        """Take the run's lease and keep renewing it. Cancelled meanwhile (a Ctrl-C), it
        still waits to learn whether the lease was taken (a write handed to the store runs
        anyway) and says so in ``leased``, so the caller can give it back."""
        taking = asyncio.ensure_future(
            self.store.acquire_lease(self.run_id, self.owner, self.lease_seconds)
        )
        try:
            await asyncio.shield(taking)
        except asyncio.CancelledError:
            await asyncio.wait([taking])
            self.leased = not taking.cancelled() and taking.exception() is None
            raise
        self.leased = True
        self._executing = asyncio.current_task()
        self._renewer = asyncio.create_task(self._renew(), name=f"foreman-lease-{self.run_id}")

    async def release(self) -> None:
        self._stop_timer()
        await self._settle()
        await self._stop_renewing()
        await self.store.release_lease(self.run_id, self.owner)

    async def _stop_renewing(self) -> None:
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    async def _renew(self) -> None:
        loop = asyncio.get_running_loop()
        every = self.lease_seconds / 3
        renewed = loop.time()
        while True:
            await asyncio.sleep(min(self.cancel_poll, every))
            # A failed renewal or poll (store busy for a moment) is retried at the next
            # beat; left to end this task, it would stop renewing for good and then surface
            # from ``release``, replacing the run's own outcome.
            with contextlib.suppress(StoreError):
                if await self.store.cancel_requested(self.run_id):
                    self.cancelled = True
                    self.ledger.stopping = CallStatus.cancelled
                    if self._executing is not None:
                        self._executing.cancel()
                    return
                if loop.time() - renewed >= every:
                    await self.store.renew_lease(self.run_id, self.owner, self.lease_seconds)
                    renewed = loop.time()


def _settle_all(
    batch: list[tuple[Checkpoint, asyncio.Future[None]]], error: BaseException | None
) -> None:
    """Wake every waiter of a group write (one cancelled meanwhile has gone already)."""
    for _, committed in batch:
        if committed.done():
            continue
        if error is None:
            committed.set_result(None)
        elif isinstance(error, asyncio.CancelledError):
            committed.cancel()
        else:
            committed.set_exception(error)
