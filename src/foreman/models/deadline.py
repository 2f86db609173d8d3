"""A call's time limit as a plain ``with`` block: ``asyncio.timeout`` without coroutines,
and without a timer of its own.

Every model call runs under a time limit, and in a wide fan-out every task's start cost
delays the start of all the tasks after it. ``async with asyncio.timeout(...)`` runs two
coroutines (``__aenter__``, ``__aexit__``) and builds a state machine around one timer;
``Deadline`` keeps the cancellation rules and drops the rest (measured in
docs/benchmarks.md). It behaves as ``asyncio.timeout`` does: when the time is up it
cancels the task it was entered in, and turns that cancellation, and only that one, into
``TimeoutError`` as the block exits; a cancellation from elsewhere (Ctrl-C, a stopped
run) passes through untouched, even if the time ran out meanwhile.

Deadlines due in the same millisecond (``TICK``) of the same loop share one loop timer,
an ``_Alarm``: the thousand calls a fan-out starts in one turn schedule a few dozen timers,
not a thousand, and a call that ends in time leaves its alarm without cancelling a timer
(the alarm's timer goes only when its last deadline leaves). A deadline so rounded up
fires at most one ``TICK`` late, below what the loop's own timers promise (its selector
waits in whole milliseconds).
"""

from __future__ import annotations

import asyncio
import math
from types import TracebackType

#: Seconds a deadline may be rounded up by, so that deadlines share timers.
TICK = 0.001

#: The alarm of each tick still to ring, at most one per tick; an alarm of another loop
#: (another thread) found here is replaced, not shared. Only sharing depends on this
#: registry: an alarm rings for its deadlines whether or not it is still listed.
_ALARMS: dict[int, _Alarm] = {}

#: Past this many listed alarms, ticks gone by are dropped from the registry (only an
#: alarm whose loop stopped without ringing it, and without cancelling its tasks, stays
#: listed after its tick); then the bar is twice what is left, so that many deadlines in
#: flight at once cost one look at the registry per alarm, not one each time.
_prune_above = 256


class Deadline:
    """``with Deadline(seconds):`` inside a task; ``seconds=None`` sets no limit."""

    __slots__ = ("_alarm", "_cancelling", "_delay", "_expired", "_task")

    def __init__(self, seconds: float | None) -> None:
        self._delay = seconds
        self._alarm: _Alarm | None = None
        self._expired = False

    def __enter__(self) -> Deadline:
        if self._delay is None:
            return self
        if self._alarm is not None or self._expired:
            raise RuntimeError("a Deadline cannot be entered twice")
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Deadline should be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        loop = task.get_loop()
        if self._delay <= 0:  # already up: at the next turn, as asyncio.timeout does
            alarm = _Alarm(loop, None)
        else:
            tick = math.ceil((loop.time() + self._delay) / TICK)
            alarm = _ALARMS.get(tick)  # type: ignore[assignment]
            if alarm is None or alarm.loop is not loop:
                alarm = _Alarm(loop, tick)
        alarm.deadlines[self] = None
        self._alarm = alarm
        return self

    def _expire(self) -> None:
        self._alarm = None
        self._expired = True
        self._task.cancel()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        alarm = self._alarm
        if alarm is not None:
            alarm.leave(self)
            self._alarm = None
        elif self._expired:
            # Ours is undone; a cancellation requested on top of it still stands.
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc

    @property
    def expired(self) -> bool:
        """Whether the time ran out while the block ran."""
        return self._expired


class _Alarm:
    """One loop timer for the deadlines due at the end of one tick (``tick=None``: at the
    loop's next turn, for one deadline with no time left). It cancels the task of each
    deadline still in it when it rings; its timer is cancelled when the last one leaves."""

    __slots__ = ("deadlines", "handle", "loop", "tick")

    def __init__(self, loop: asyncio.AbstractEventLoop, tick: int | None) -> None:
        self.loop = loop
        self.tick = tick
        self.deadlines: dict[Deadline, None] = {}  # in the order they were entered
        if tick is None:
            self.handle: asyncio.Handle = loop.call_soon(self._ring)
            return
        self.handle = loop.call_at(tick * TICK, self._ring)
        if len(_ALARMS) >= _prune_above:
            _prune(math.floor(loop.time() / TICK))
        _ALARMS[tick] = self

    def leave(self, deadline: Deadline) -> None:
        del self.deadlines[deadline]
        if not self.deadlines:
            self.handle.cancel()
            self._unlist()

    def _ring(self) -> None:
        self._unlist()
        deadlines, self.deadlines = self.deadlines, {}
        for deadline in deadlines:
            deadline._expire()

    def _unlist(self) -> None:
        if self.tick is not None and _ALARMS.get(self.tick) is self:
            del _ALARMS[self.tick]


def _prune(now: int) -> None:
    global _prune_above
    for tick in list(_ALARMS):  # a copy taken at once: other threads' loops list alarms too
        if tick < now:
            _ALARMS.pop(tick, None)
    _prune_above = max(256, 2 * len(_ALARMS))
