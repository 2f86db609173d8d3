"""A scripted model that implements the real model interface (public test double).

Use it to test orchestrations without a provider, and in docs:

    model = ScriptedModel(["first answer", "second answer"])
    model = ScriptedModel(lambda request: "echo: " + request.messages[-1].content)

A script entry may be a string (the answer text), a ``ModelResponse``, a ``ToolCall`` or
a list of them (the model calls those tools, in parallel), or an exception instance
(raised, to simulate provider failures). A tool call with an empty ``id`` gets one,
``call_<n>`` counting the model's calls, as providers give every call its own. Usage
numbers are real counts of the words sent and received, so accounting code is exercised
too.

    model = ScriptedModel([
        [ToolCall(id="", name="search", arguments={"q": "llamas"})],
        "Llamas are big.",
    ])
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable

from foreman.models.base import Model, ModelRequest, ModelResponse, ToolCall, Usage

ScriptEntry = str | ModelResponse | ToolCall | list[ToolCall] | BaseException
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
        self._calls_made = 0
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
        if isinstance(entry, str):
            return ModelResponse(text=entry, model=self.name, usage=_count_usage(request, entry))
        return self._tool_use(request, entry)

    def _tool_use(self, request: ModelRequest, entry: ToolCall | list[ToolCall]) -> ModelResponse:
        # Apart from ``complete``: its comprehension would make ``self`` a closure cell
        # of every call's frame (the engine's benchmarks run thousands at once).
        calls = [
            self._with_id(call) for call in ([entry] if isinstance(entry, ToolCall) else entry)
        ]
        written = " ".join(f"{call.name} {json.dumps(call.arguments)}" for call in calls)
        return ModelResponse(
            tool_calls=calls,
            stop_reason="tool_use",
            model=self.name,
            usage=_count_usage(request, written),
        )

    def _with_id(self, call: ToolCall) -> ToolCall:
        self._calls_made += 1
        return call if call.id else call.model_copy(update={"id": f"call_{self._calls_made}"})

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
    for message in request.messages:  # loops, not generators: the engine's benchmarks
        sent += len(message.content.split())  # count the test double's cost as the engine's
        for call in message.tool_calls:
            sent += len(json.dumps(call.arguments).split())
        for result in message.tool_results:
            sent += len(result.content.split())
    return Usage(input_tokens=sent, output_tokens=len(answer.split()))
