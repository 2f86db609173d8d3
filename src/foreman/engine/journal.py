"""Checkpointing one run: a task's result is stored before its dependants may start.

Events are buffered in memory and written in the same transaction as the next checkpoint,
so each settled task costs one write, and the stored log never runs ahead of the state.
The journal also holds the run's lease, renewed in the background while the run is alive,
so a second process cannot execute the same run at the same time, and polls the run's
cancel flag (``foreman cancel`` from another process): when it is set, the journal sets
``cancelled`` and cancels the task executing the run, which then records ``cancelled``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from foreman.engine.results import RunStatus, TaskResult
from foreman.errors import StoreError
from foreman.ledger.recorder import CallLedger, OnCall
from foreman.ledger.records import CallStatus
from foreman.models.base import Usage
from foreman.plan.schema import Plan
from foreman.store.base import LeaseOwner, Store

LEASE_SECONDS = 30.0
CANCEL_POLL_SECONDS = 1.0


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
    ) -> None:
        self.store = store
        #: Tokens earlier executions of the run spent (their ledger rows).
        self.spent_before = spent or Usage()
        #: This execution's call attempts; written with each checkpoint, and early (in
        #: the background) as each call starts, so a crash cannot hide a call in flight.
        self.ledger = CallLedger(
            run_id, keep_prompts=keep_prompts, on_start=self._write_calls_soon, on_end=on_call
        )
        self._calls_write: asyncio.Task[None] | None = None
        self.run_id = run_id
        self.owner = LeaseOwner()
        self.lease_seconds = lease_seconds
        self.cancel_poll = cancel_poll
        #: Set when the run stopped because someone asked it to (``Store.cancel_run``).
        self.cancelled = False
        self._events: list[Any] = []
        self._renewer: asyncio.Task[None] | None = None
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
        events, self._events = self._events, []
        calls = self.ledger.take()
        try:
            await self.store.save_task(self.run_id, result, events, calls=calls)
        except BaseException:  # cut short (an abort, Ctrl-C): the run's last write takes them
            self.ledger.unwritten(calls)
            raise

    async def save_plan(self, plan: Plan, usage: Usage) -> None:
        calls = self.ledger.take()
        try:
            await self.store.save_plan(self.run_id, plan, usage, calls=calls)
        except BaseException:
            self.ledger.unwritten(calls)
            raise

    def _write_calls_soon(self) -> None:
        """Have the calls that just started written at the next turn of the loop: one
        write for all that started together, never a wait before a call."""
        if self._calls_write is None or self._calls_write.done():
            self._calls_write = asyncio.get_running_loop().create_task(self._write_calls())

    async def _write_calls(self) -> None:
        calls = self.ledger.take()
        if not calls:
            return
        try:
            await self.store.save_calls(self.run_id, calls)
        except (StoreError, asyncio.CancelledError):
            # The next checkpoint takes them (and fails loudly if the store is down).
            self.ledger.unwritten(calls)

    async def update(
        self,
        status: RunStatus,
        *,
        answer: str | None = None,
        error: str | None = None,
    ) -> None:
        events, self._events = self._events, []
        if status is not RunStatus.running:  # stopping: calls cut short are on the books
            self.ledger.interrupt_open()
            await self._settle_calls_write()
        await self.store.update_run(
            self.run_id,
            status=status,
            answer=answer,
            error=error,
            usage=self.spent,
            events=events,
            calls=self.ledger.take(),
        )

    async def _settle_calls_write(self) -> None:
        """Let a background write of started calls finish first (it must not land late)."""
        if self._calls_write is not None and not self._calls_write.done():
            with contextlib.suppress(asyncio.CancelledError, StoreError):
                await asyncio.shield(self._calls_write)

    async def acquire(self) -> None:
        await self.store.acquire_lease(self.run_id, self.owner, self.lease_seconds)
        self._executing = asyncio.current_task()
        self._renewer = asyncio.create_task(self._renew(), name=f"foreman-lease-{self.run_id}")

    async def release(self) -> None:
        await self._settle_calls_write()
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        await self.store.release_lease(self.run_id, self.owner)

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
