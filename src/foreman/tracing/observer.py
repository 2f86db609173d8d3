"""Observers: code that watches runs from the side (logs, traces), never steering them.

An observer hears every event of a run and every settled call of its ledger. It must be
quick and must not raise: one that does is reported once as a warning and then ignored,
because a broken exporter must never fail a run.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any, Protocol, runtime_checkable

from foreman.ledger.records import CallRecord


@runtime_checkable
class Observer(Protocol):
    """Watches runs: ``on_event`` for each event, ``on_call`` for each settled call."""

    def on_event(self, event: Any) -> None: ...

    def on_call(self, record: CallRecord) -> None: ...


class Observers:
    """Several observers behind one; each failing one is warned about once and dropped.

    ``record_prompts`` is the orchestrator's: an observer with a ``record_prompts``
    attribute left at ``None`` is given it, so ``Orchestrator(record_prompts=False)`` keeps
    the run's text out of its logs and traces without configuring each observer again.
    """

    def __init__(self, observers: Iterable[Observer] = (), *, record_prompts: bool = True) -> None:
        self.observers = list(observers)
        for observer in self.observers:
            if getattr(observer, "record_prompts", False) is None:
                observer.record_prompts = record_prompts  # type: ignore[attr-defined]

    def __bool__(self) -> bool:
        return bool(self.observers)

    def on_event(self, event: Any) -> None:
        for observer in list(self.observers):
            try:  # inline, not a helper: every event of a run passes here
                observer.on_event(event)
            except Exception as exc:
                self._drop(observer, exc)

    def on_call(self, record: CallRecord) -> None:
        for observer in list(self.observers):
            try:
                observer.on_call(record)
            except Exception as exc:
                self._drop(observer, exc)

    def watching(self, on_event: Callable[[Any], None]) -> Callable[[Any], None]:
        """``on_event`` preceded by the observers (which see the event first)."""

        def both(event: Any) -> None:
            self.on_event(event)
            on_event(event)

        return both

    def _drop(self, observer: Observer, exc: Exception) -> None:
        self.observers.remove(observer)
        warnings.warn(
            f"Observer {type(observer).__name__} failed and is now ignored: {exc}",
            RuntimeWarning,
            stacklevel=3,
        )
