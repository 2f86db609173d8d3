"""The one model interface every provider adapter implements.

The engine only ever sees ``ModelRequest`` in and ``ModelResponse`` out; provider quirks
(wire formats, how structured output is forced, error classes) stay inside each adapter.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import Any, Literal

from pydantic import BaseModel, Field

from foreman.models.defaults import DEFAULT_CALL_TIMEOUT


class Message(BaseModel):
    """One turn of the conversation sent to a model."""

    role: Literal["user", "assistant"]
    content: str


class ToolSpec(BaseModel):
    """A tool the model may call: a name, what it is for, and its JSON-schema parameters."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})


class ToolCall(BaseModel):
    """A tool call the model asked for."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Usage(BaseModel):
    """Tokens one call consumed, as the provider reported them.

    Prompt tokens served from or written to a provider's prompt cache are billed at their
    own rates, so they are kept apart: ``input_tokens`` counts only the uncached ones.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
        )


class ModelRequest(BaseModel):
    """What the engine asks of a model.

    ``output_schema``, when set, is a JSON schema the answer must follow; each adapter uses
    its provider's strongest mechanism (grammar, response_format, forced tool call) and puts
    the JSON document in ``ModelResponse.text``.
    """

    system: str | None = None
    messages: list[Message]
    tools: list[ToolSpec] = Field(default_factory=list)
    output_schema: dict[str, Any] | None = None
    max_tokens: int = 1024
    temperature: float | None = None


StopReason = Literal["end", "max_tokens", "tool_use", "stop_sequence", "other"]


class ModelResponse(BaseModel):
    """What a model answered, normalised across providers."""

    text: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    stop_reason: StopReason = "end"
    model: str
    usage: Usage = Field(default_factory=Usage)


class Model(ABC):
    """A chat model behind one async call.

    Implementations must not block the event loop: network adapters use async clients,
    the local adapter runs llama.cpp in a worker thread.
    """

    #: The name users write to select this model, e.g. ``"openai:gpt-5.4-mini"``.
    name: str

    #: Seconds one call may take when its caller sets no timeout.
    default_call_timeout: float = DEFAULT_CALL_TIMEOUT

    @abstractmethod
    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Answer one request. Raise ``foreman.errors.ModelError`` subclasses on failure."""

    async def complete_within(self, request: ModelRequest, seconds: float) -> ModelResponse:
        """``complete``, raising ``TimeoutError`` when the answer takes over ``seconds``.

        A model that queues its calls overrides this so that only its own work is timed:
        otherwise calls waiting behind others would time out under load.
        """
        async with asyncio.timeout(seconds):
            return await self.complete(request)

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most models hold nothing
        """Release clients or files; safe to call more than once."""
