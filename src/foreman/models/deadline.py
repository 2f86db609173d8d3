"""A call's time limit as a plain ``with`` block: ``asyncio.timeout`` without coroutines.

Every model call runs under a time limit, and in a wide fan-out every task's start cost
delays the start of all the tasks after it. ``async with asyncio.timeout(...)`` runs two
coroutines (``__aenter__``, ``__aexit__``) and builds a state machine around one timer;
``Deadline`` keeps the timer and the cancellation rules and drops the rest (measured in
docs/benchmarks.md). It behaves as ``asyncio.timeout`` does: when the time is up it
cancels the task it was entered in, and turns that cancellation, and only that one, into
``TimeoutError`` as the block exits; a cancellation from elsewhere (Ctrl-C, a stopped
run) passes through untouched, even if the time ran out meanwhile.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class Deadline:
    """``with Deadline(seconds):`` inside a task; ``seconds=None`` sets no limit."""

    __slots__ = ("_cancelling", "_delay", "_expired", "_task", "_timer")

    def __init__(self, seconds: float | None) -> None:
        self._delay = seconds
        self._timer: asyncio.Handle | None = None
        self._expired = False

    def __enter__(self) -> Deadline:
        if self._delay is None:
            return self
        if self._timer is not None or self._expired:
            raise RuntimeError("a Deadline cannot be entered twice")
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Deadline should be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        loop = task.get_loop()
        if self._delay <= 0:  # already up: at the next turn, as asyncio.timeout does
            self._timer = loop.call_soon(self._expire)
        else:
            self._timer = loop.call_at(loop.time() + self._delay, self._expire)
        return self

    def _expire(self) -> None:
        self._timer = None
        self._expired = True
        self._task.cancel()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        timer = self._timer
        if timer is not None:
            timer.cancel()
            self._timer = None
        elif self._expired:
            # Ours is undone; a cancellation requested on top of it still stands.
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc

    @property
    def expired(self) -> bool:
        """Whether the time ran out while the block ran."""
        return self._expired
