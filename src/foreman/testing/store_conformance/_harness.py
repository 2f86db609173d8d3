"""How each conformance test gets a fresh store, and the capabilities a store may lack.

Every test is a plain (synchronous) pytest test that runs its body with ``asyncio.run``:
no pytest plugin and no event-loop configuration are needed, and the store is created,
used and closed inside that one loop (a store holding loop-bound resources, such as a
connection pool, works as it would in an application).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from foreman.store.base import Store

H = TypeVar("H", bound="Harness")
Body = Callable[[H, Store], Coroutine[Any, Any, None]]


class Harness:
    """What a conformance class needs from its subclass: ``make_store``, and optionally
    ``reopen_store`` (durability). Both may be plain or ``async`` methods."""

    #: The test's private directory (pytest's ``tmp_path``), set before ``make_store``.
    tmp_path: Path

    def make_store(self, tmp_path: Path) -> Store | Awaitable[Store]:
        """A new, empty store for one test; ``tmp_path`` is a fresh directory for it."""
        raise NotImplementedError(
            f"{type(self).__name__} must define make_store(self, tmp_path) returning a new, "
            "empty store: the conformance suite runs every test against a fresh one."
        )

    def reopen_store(self, tmp_path: Path) -> Store | Awaitable[Store]:
        """Optional: a second store over what ``make_store``'s store wrote, as the next
        process would open it. Stores that keep nothing after closing leave it out, and the
        durability tests are skipped."""
        raise NotImplementedError

    @property
    def durable(self) -> bool:
        """Detected by override, so a store written before the capability existed passes."""
        return type(self).reopen_store is not Harness.reopen_store

    async def reopen(self) -> Store:
        """The store as the next process sees it; skips the test for a non-durable store."""
        if not self.durable:
            pytest.skip(f"{type(self).__name__} defines no reopen_store: durability unchecked")
        return await _resolved(self.reopen_store(self.tmp_path))


def store_test(body: Body[H]) -> Callable[[H, Path], None]:
    """Turn ``async def test_x(self, store)`` into a plain pytest test on a fresh store."""

    def test(self: H, tmp_path: Path) -> None:
        asyncio.run(_drive(self, body, tmp_path))

    test.__name__, test.__qualname__ = body.__name__, body.__qualname__
    test.__doc__, test.__module__ = body.__doc__, body.__module__
    return test


async def _drive(harness: H, body: Body[H], tmp_path: Path) -> None:
    harness.tmp_path = tmp_path
    store = await _resolved(harness.make_store(tmp_path))
    if not isinstance(store, Store):
        raise TypeError(f"make_store returned {type(store).__name__}, not a foreman Store")
    try:
        await body(harness, store)
    finally:
        await store.aclose()


async def _resolved(made: Store | Awaitable[Store]) -> Store:
    return await made if inspect.isawaitable(made) else made
