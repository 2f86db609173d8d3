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
import threading
import weakref
from collections.abc import Callable
from types import TracebackType

#: Seconds a deadline may be rounded up by, so that deadlines share timers.
TICK = 0.001


class _Alarms(dict[int, "_Alarm"]):
    """One loop's alarms by tick: a dict that can be referred to weakly."""

    __slots__ = ("__weakref__",)


def _nothing() -> None:
    return None


class _Listed(threading.local):
    """The alarms still to ring of the loop this thread runs, at most one per tick.

    Per thread, so no other thread's loop ever touches them. Held weakly, the loop and
    its alarms alike: the alarms are kept by the loop's timers and their deadlines, so a
    loop dropped with calls still in flight (its tasks never cancelled) is collected
    with them, as with ``asyncio.timeout``. Only sharing depends on this list: an alarm
    rings for its deadlines whether or not it is still listed.
    """

    def __init__(self) -> None:
        self.loop: Callable[[], asyncio.AbstractEventLoop | None] = _nothing
        self.alarms: Callable[[], _Alarms | None] = _nothing

    def of(self, loop: asyncio.AbstractEventLoop) -> _Alarms | None:
        """The loop's alarms; ``None`` for a loop that cannot be referred to weakly."""
        alarms = self.alarms()
        if alarms is None or self.loop() is not loop:
            try:
                self.loop = weakref.ref(loop)
            except TypeError:
                self.loop, self.alarms = _nothing, _nothing
                return None
            alarms = _Alarms()
            self.alarms = weakref.ref(alarms)
        return alarms


_LISTED = _Listed()


class Deadline:
    """``with Deadline(seconds):`` inside a task; ``seconds=None`` sets no limit."""

    __slots__ = ("_alarm", "_cancelling", "_delay", "_entered", "_expired", "_task")

    def __init__(self, seconds: float | None) -> None:
        self._delay = seconds
        self._alarm: _Alarm | None = None
        self._entered = self._expired = False

    def __enter__(self) -> Deadline:
        if self._entered:  # as asyncio.timeout: one use, even after a clean exit
            raise RuntimeError("a Deadline cannot be entered twice")
        self._entered = True
        if self._delay is None:
            return self
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Deadline should be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        loop = task.get_loop()
        if self._delay <= 0:  # already up: at the next turn, as asyncio.timeout does
            alarm = _Alarm.alone(loop, None)
        else:
            when = loop.time() + self._delay
            try:
                tick = math.ceil(when / TICK)  # NaN raises ValueError: refused
            except OverflowError:  # no end (``math.inf``): a timer of its own
                alarm = _Alarm.alone(loop, when)
            else:
                alarms = _LISTED.of(loop)
                if alarms is None:
                    alarm = _Alarm.alone(loop, tick * TICK)
                else:
                    alarm = alarms.get(tick) or _Alarm.listed(loop, tick, alarms)
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
    """One loop timer for the deadlines due at the end of one tick (``listed`` among the
    thread's alarms until it rings or its last deadline leaves), or for one deadline on
    its own (``alone``). It cancels the task of each deadline still in it when it rings;
    its timer is cancelled when the last one leaves."""

    __slots__ = ("alarms", "deadlines", "handle", "tick")

    handle: asyncio.Handle

    def __init__(self, alarms: _Alarms | None = None, tick: int = 0) -> None:
        self.deadlines: dict[Deadline, None] = {}  # in the order they were entered
        self.alarms = alarms
        self.tick = tick

    @classmethod
    def listed(cls, loop: asyncio.AbstractEventLoop, tick: int, alarms: _Alarms) -> _Alarm:
        alarms[tick] = alarm = cls(alarms, tick)
        alarm.handle = loop.call_at(tick * TICK, alarm._ring)
        return alarm

    @classmethod
    def alone(cls, loop: asyncio.AbstractEventLoop, when: float | None) -> _Alarm:
        """At ``when`` (too far for a tick, or a loop without a list), or at the next
        turn when ``None``."""
        alarm = cls()
        if when is None:
            alarm.handle = loop.call_soon(alarm._ring)
        else:
            alarm.handle = loop.call_at(when, alarm._ring)
        return alarm

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
        alarms = self.alarms
        if alarms is not None and alarms.get(self.tick) is self:
            del alarms[self.tick]
