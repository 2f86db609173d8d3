"""A scripted model that implements the real model interface (public test double).

Use it to test orchestrations without a provider, and in docs:

    model = ScriptedModel(["first answer", "second answer"])
    model = ScriptedModel(lambda request: "echo: " + request.messages[-1].content)

A script entry may be a string (the answer text), a ``ModelResponse``, or an exception
instance (raised, to simulate provider failures). Usage numbers are real counts of the
words sent and received, so accounting code is exercised too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from foreman.models.base import Model, ModelRequest, ModelResponse, Usage

ScriptEntry = str | ModelResponse | BaseException
Script = Iterable[ScriptEntry] | Callable[[ModelRequest], ScriptEntry]


class ScriptedModel(Model):
    """A model whose answers come from a list (in order) or a function of the request.

    ``latency`` (seconds) is awaited before each answer, or a function of the request
    returning seconds, to simulate slow providers without blocking the loop.
    """

    def __init__(
        self,
        script: Script,
        *,
        name: str = "scripted",
        latency: float | Callable[[ModelRequest], float] = 0.0,
    ) -> None:
        self.name = name
        self._function = script if callable(script) else None
        self._queue = None if callable(script) else list(script)
        self._latency = latency
        #: Every request received, in order: assert on what the engine sent.
        self.requests: list[ModelRequest] = []

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        delay = self._latency(request) if callable(self._latency) else self._latency
        if delay:
            await asyncio.sleep(delay)
        entry = self._next(request)
        if isinstance(entry, BaseException):
            raise entry
        if isinstance(entry, ModelResponse):
            return entry
        return ModelResponse(text=entry, model=self.name, usage=_count_usage(request, entry))

    def _next(self, request: ModelRequest) -> ScriptEntry:
        if self._function is not None:
            return self._function(request)
        if not self._queue:
            raise AssertionError(
                f"ScriptedModel {self.name!r} ran out of answers after "
                f"{len(self.requests) - 1} calls; add more entries to its script."
            )
        return self._queue.pop(0)


def _count_usage(request: ModelRequest, answer: str) -> Usage:
    sent = len((request.system or "").split())
    sent += sum(len(message.content.split()) for message in request.messages)
    return Usage(input_tokens=sent, output_tokens=len(answer.split()))
