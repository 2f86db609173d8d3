"""Model calls made side by side, each settled before the first failure is raised.

``asyncio.gather`` raises the first error at once and leaves the other calls running,
unawaited: when a budget refuses one of several route or summary calls, those already
running went on after the run had ended, booked ``interrupted`` at estimates while the
provider billed them in full. Under ``on_limit="finish"`` a running call finishes and is
booked at what it spent; under ``"cancel"`` the budget cancels the run's task, and with it
these calls, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def all_settled(*calls: Awaitable[T]) -> list[T]:
    """The results of ``calls``, in order, once every one has ended; then the first
    error, if any."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]
