"""Live updates: one poller per server watches the store, every open page hears of a change.

Runs are written by other processes (``foreman run``, a Python program), so there is no
in-process signal to wait on: the store is polled. ``Store.change_marker`` is built to be
polled (two integers for SQLite, no table read), every ``interval`` seconds, by one task
however many pages are open, and only while one is. A page is told *that* something
changed (a server-sent ``change`` event); it then reads what it shows through the JSON API,
so an event never carries data a request could not read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Hashable

from foreman.errors import ForemanError
from foreman.store.base import Store

#: Seconds between two looks at the store: a change reaches the page within about this,
#: plus the page's own read (docs/benchmarks.md measures it).
POLL_SECONDS = 0.2
#: Seconds of quiet after which a comment line keeps proxies from closing the stream.
KEEPALIVE_SECONDS = 15.0


class ChangeFeed:
    """Counts the store's changes; ``wait`` returns when the count moves past one seen."""

    def __init__(self, store: Store, interval: float = POLL_SECONDS) -> None:
        self.store = store
        self.interval = interval
        self.version = 0
        self.changed_at = time.time()
        self._changed = asyncio.Condition()
        self._poller: asyncio.Task[None] | None = None
        self._listeners = 0

    async def _marker(self) -> Hashable:
        try:
            return await self.store.change_marker()
        except ForemanError:  # locked past the busy timeout, unreadable for a moment...
            return None

    async def _poll(self) -> None:
        marker = await self._marker()
        while True:
            await asyncio.sleep(self.interval)
            current = await self._marker()
            if current is not None and current != marker:
                marker = current
                async with self._changed:
                    self.version += 1
                    self.changed_at = time.time()
                    self._changed.notify_all()

    async def wait(self, seen: int, quiet: float) -> int:
        """The version once it differs from ``seen``, or ``seen`` after ``quiet`` seconds."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(quiet):
                    await self._changed.wait_for(lambda: self.version != seen)
            return self.version

    async def stream(self) -> AsyncIterator[str]:
        """Server-sent events for one page: ``hello``, then a ``change`` per change."""
        self._listeners += 1
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll(), name="foreman-ui-changes")
        try:
            seen = self.version
            yield "retry: 1000\nevent: hello\ndata: " + json.dumps({"version": seen}) + "\n\n"
            while True:
                current = await self.wait(seen, KEEPALIVE_SECONDS)
                if current == seen:
                    yield ": keep-alive\n\n"
                    continue
                seen = current
                data = {"version": seen, "detected_at": self.changed_at}
                yield "event: change\ndata: " + json.dumps(data) + "\n\n"
        finally:
            self._listeners -= 1
            if not self._listeners:
                await self.aclose()

    async def aclose(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
