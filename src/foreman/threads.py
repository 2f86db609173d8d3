"""Handing what a thread of foreman's own computed back to the event loop awaiting it.

The store's writer thread and sync tools' daemon threads both end the same way: the
result (or the error) goes to a future of the loop, which may meanwhile have been
cancelled (a timeout, a Ctrl-C) or closed (the process is ending).
"""

from __future__ import annotations

import asyncio
from typing import Any


def hand_back(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    """From any thread: settle ``future`` on ``loop`` with ``result``, or ``error``;
    nothing when its awaiting coroutine was cancelled or the loop has closed."""
    try:
        loop.call_soon_threadsafe(_settle, future, result, error)
    except RuntimeError:  # the loop has closed: nobody is waiting any more
        pass


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # cancelled meanwhile
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
