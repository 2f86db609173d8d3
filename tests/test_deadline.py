"""``Deadline``: a call's time limit behaves as ``asyncio.timeout`` does."""

from __future__ import annotations

import asyncio

import pytest

from foreman.models.deadline import Deadline


async def test_the_block_runs_out_of_time_as_a_timeout_error() -> None:
    with pytest.raises(TimeoutError):
        with Deadline(0.01) as deadline:
            await asyncio.sleep(10)
    assert deadline.expired
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # its own cancellation undone


async def test_a_block_done_in_time_leaves_no_timer_behind() -> None:
    loop = asyncio.get_running_loop()
    with Deadline(30) as deadline:
        await asyncio.sleep(0)
    assert not deadline.expired
    timers = [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
    assert not any(getattr(h, "_callback", None) == deadline._expire for h in timers)


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


async def test_no_time_left_expires_at_the_next_turn() -> None:
    with pytest.raises(TimeoutError):
        with Deadline(0):
            await asyncio.sleep(0)
