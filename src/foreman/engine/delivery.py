"""Handing a run's events to the caller: a task's settling event only once its checkpoint
has committed, the run's last event only once its final state is stored; and, for
``Orchestrator.stream``, as an async iterator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from foreman.engine.journal import RunJournal
from foreman.events import (
    Event,
    RunFinished,
    TaskFailed,
    TaskFinished,
    TaskSkipped,
)
from foreman.results import (
    RunResult,
    TaskResult,
)

OnEvent = Callable[[Event], None]


class Delivery:
    """Records every event, and hands it to the caller; a task's settling event (finished,
    failed, skipped) is handed over only once its checkpoint has committed, so a consumer
    that sees ``task_finished`` knows the task will never run again."""

    SETTLING = (TaskFinished, TaskFailed, TaskSkipped)

    def __init__(self, journal: RunJournal, on_event: OnEvent) -> None:
        self.journal = journal
        self.on_event = on_event
        self.held: dict[str, list[Event]] = {}
        #: The run's final state is stored: nothing may overwrite it now.
        self.stored = False

    def emit(self, event: Event) -> None:
        self.journal.record(event)
        if isinstance(event, self.SETTLING):
            self.held.setdefault(event.task_id, []).append(event)
        else:
            self.on_event(event)

    async def checkpoint(self, result: TaskResult) -> None:
        await self.journal.checkpoint(result)
        for event in self.held.pop(result.task_id, ()):
            self.on_event(event)

    async def finish(self, event: RunFinished, *, quiet: bool = False) -> None:
        """Store the run's final state with ``event`` as its last event, then hand it over.

        Stored first: a consumer that stops at ``run_finished`` (and so cancels the run)
        must not catch the final write half done. ``quiet``: a consumer that raises now is
        ignored, because the run is already failing with an error of its own.
        """
        result = event.result
        await asyncio.shield(
            self.journal.update(result.status, answer=result.answer, error=result.error, last=event)
        )
        self.stored = True
        try:
            self.on_event(event)
        except Exception:
            if not quiet:
                raise


async def events_of(
    start: Callable[[OnEvent], Awaitable[RunResult]],
) -> AsyncIterator[Event]:
    """Events of a run started by ``start(emit)``, as they happen; errors re-raised."""
    queue: asyncio.Queue[Event | None] = asyncio.Queue()
    job = asyncio.ensure_future(start(queue.put_nowait))
    job.add_done_callback(lambda _: queue.put_nowait(None))
    try:
        while (event := await queue.get()) is not None:
            yield event
        job.result()
    finally:
        if not job.done():
            job.cancel()
            await asyncio.gather(job, return_exceptions=True)
