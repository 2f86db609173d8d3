"""``Deadline``: a call's time limit behaves as ``asyncio.timeout`` does."""

from __future__ import annotations

import asyncio
import gc
import math
import threading
import weakref

import pytest

from foreman.models.deadline import _LISTED, TICK, Deadline, _Alarm


async def test_the_block_runs_out_of_time_as_a_timeout_error() -> None:
    with pytest.raises(TimeoutError):
        with Deadline(0.01) as deadline:
            await asyncio.sleep(10)
    assert deadline.expired
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # its own cancellation undone


def alarm_timers(loop: asyncio.AbstractEventLoop) -> list[asyncio.TimerHandle]:
    """The loop's live timers that ring deadlines."""
    timers = [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
    return [h for h in timers if isinstance(getattr(h._callback, "__self__", None), _Alarm)]


async def test_a_block_done_in_time_leaves_no_timer_behind() -> None:
    loop = asyncio.get_running_loop()
    with Deadline(30) as deadline:
        assert len(alarm_timers(loop)) == 1
        await asyncio.sleep(0)
    assert not deadline.expired
    assert alarm_timers(loop) == []
    assert _LISTED.of(loop) == {}


async def test_deadlines_due_in_the_same_tick_share_one_timer_and_all_expire() -> None:
    """A burst of calls started in one turn: a few timers, not one each. One call that
    ends in time leaves the timer to the others, which still run out of time."""
    loop = asyncio.get_running_loop()
    entered = asyncio.Event()
    at: list[float] = []

    async def guarded(seconds: float) -> str:
        at.append(loop.time())
        with Deadline(0.05):
            entered.set()
            await asyncio.sleep(seconds)
        return "in time"

    tasks = [asyncio.create_task(guarded(0 if i == 0 else 10)) for i in range(200)]
    await entered.wait()
    # One timer per millisecond tick the burst spanned (a busy machine stretches it).
    ticks = int((max(at) - min(at)) / 0.001) + 2
    assert 1 <= len(alarm_timers(loop)) <= min(ticks, 199)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[0] == "in time"
    assert all(isinstance(result, TimeoutError) for result in results[1:])
    assert alarm_timers(loop) == []


async def test_no_limit_sets_no_timer() -> None:
    with Deadline(None) as deadline:
        await asyncio.sleep(0.01)
    assert not deadline.expired


async def test_a_cancellation_from_outside_passes_through() -> None:
    async def guarded() -> None:
        with Deadline(30):
            await asyncio.sleep(10)

    task = asyncio.create_task(guarded())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cancellation_on_top_of_an_expiry_still_cancels() -> None:
    """The time runs out and the run is stopped in the same turn: the stop wins, as
    with ``asyncio.timeout`` (a ``TimeoutError`` would let the retry loop go on)."""
    deadline = Deadline(30)

    async def guarded() -> None:
        with deadline:
            await asyncio.sleep(10)

    task = asyncio.create_task(guarded())
    await asyncio.sleep(0.01)
    deadline._expire()  # the timer fires...
    task.cancel()  # ...and the run is stopped before the task resumes
    with pytest.raises(asyncio.CancelledError):
        await task
    assert deadline.expired


async def test_an_inner_deadline_does_not_swallow_the_outer_one() -> None:
    with pytest.raises(TimeoutError):
        with Deadline(0.01) as outer:
            with Deadline(30) as inner:
                await asyncio.sleep(10)
    assert outer.expired and not inner.expired


def test_outside_a_task_it_says_so() -> None:
    async def no_task() -> None:
        with Deadline(1):
            pass

    coroutine = no_task()
    with pytest.raises(RuntimeError):
        coroutine.send(None)
    coroutine.close()


async def test_a_deadline_is_entered_once() -> None:
    deadline = Deadline(30)
    with deadline:
        with pytest.raises(RuntimeError, match="entered twice"):
            with deadline:
                pass
    for used in (deadline, Deadline(None)):  # as asyncio.timeout: not after an exit either
        if used._delay is None:
            with used:
                pass
        with pytest.raises(RuntimeError, match="entered twice"):
            with used:
                pass


async def test_a_time_that_is_no_number_is_refused() -> None:
    with pytest.raises(ValueError):
        with Deadline(math.nan):
            await asyncio.sleep(0)


async def test_no_time_left_expires_at_the_next_turn() -> None:
    with pytest.raises(TimeoutError):
        with Deadline(0):
            await asyncio.sleep(0)


async def test_an_alarm_of_another_loop_is_never_joined() -> None:
    """A thread lists the alarms of the loop it runs: those of a loop it ran before (which
    would ring in that loop, or never) are forgotten, not joined."""
    other = asyncio.new_event_loop()
    now = math.ceil(asyncio.get_running_loop().time() / TICK)
    try:
        alarms = _LISTED.of(other)
        for tick in range(now, now + 2000):  # every tick the deadline below may round up to
            _Alarm.listed(other, tick, alarms)
        with pytest.raises(TimeoutError):
            with Deadline(0.01):
                await asyncio.sleep(10)
    finally:
        other.close()


def test_loops_in_threads_of_their_own_keep_their_deadlines_apart() -> None:
    """Several threads, each running its loop, enter and leave deadlines at once: every
    block that waits too long times out, every other one ends in time."""
    outcomes: list[list[str]] = []

    async def guarded(seconds: float) -> str:
        try:
            for _ in range(20):
                with Deadline(0.002):  # answered without waiting: in time
                    pass
            with Deadline(0.002):
                await asyncio.sleep(seconds)
            return "in time"
        except TimeoutError:
            return "timed out"

    async def burst() -> list[str]:
        waits = [0.05 if i % 2 else 0 for i in range(60)]
        return await asyncio.gather(*(guarded(seconds) for seconds in waits))

    def thread() -> None:
        for _ in range(5):
            outcomes.append(asyncio.run(burst()))

    threads = [threading.Thread(target=thread) for _ in range(4)]
    for each in threads:
        each.start()
    for each in threads:
        each.join()
    assert len(outcomes) == 20
    assert all(got == ["in time", "timed out"] * 30 for got in outcomes)


def test_a_loop_stopped_with_calls_in_flight_is_not_kept_alive_by_its_alarms() -> None:
    """A loop closed without cancelling its tasks never rings their alarms: dropped, it is
    collected with them (its tasks, their frames), as with ``asyncio.timeout``."""
    loop = asyncio.new_event_loop()

    async def hung() -> None:
        with Deadline(10):
            await asyncio.sleep(100)

    task = loop.create_task(hung())
    loop.run_until_complete(asyncio.sleep(0.01))  # the task waits under its deadline
    loop.close()
    gone, gone_task = weakref.ref(loop), weakref.ref(task)
    del loop, task
    gc.collect()
    assert gone() is None and gone_task() is None


async def test_a_deadline_with_no_end_is_no_limit() -> None:
    """``math.inf`` (a worker's ``timeout: .inf``) sets no limit, as with asyncio.timeout."""
    with Deadline(math.inf) as deadline:
        await asyncio.sleep(0.001)
    assert not deadline.expired
