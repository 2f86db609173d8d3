"""The one model interface every provider adapter implements.

The engine only ever sees ``ModelRequest`` in and ``ModelResponse`` out; provider quirks
(wire formats, how structured output is forced, error classes) stay inside each adapter.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, model_validator

from foreman.models.deadline import Deadline
from foreman.models.defaults import DEFAULT_CALL_TIMEOUT


class ToolSpec(BaseModel):
    """A tool the model may call: a name, what it is for, and its JSON-schema parameters."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})


def storable(value: Any) -> Any:
    """``value`` with every string valid UTF-8, so JSON and SQLite can store it: a lone
    surrogate (a file name Python could not decode, a model's escaped ``\\ud800``)
    becomes a replacement character (U+FFFD). ``value`` itself when nothing needs it (no
    copy on the common path)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            # through UTF-16: a lone surrogate becomes one U+FFFD, a split pair its character
            return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return value
    if isinstance(value, dict):
        pairs = [(storable(key), storable(item)) for key, item in value.items()]
        same = all(a is k and b is v for (a, b), (k, v) in zip(pairs, value.items(), strict=True))
        return value if same else dict(pairs)
    if isinstance(value, list):
        items = [storable(item) for item in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


class ToolCall(BaseModel):
    """A tool call the model asked for (its arguments valid UTF-8, see ``ModelResponse``)."""

    id: str
    name: str
    arguments: Annotated[dict[str, Any], AfterValidator(storable)] = Field(default_factory=dict)


class ToolResult(BaseModel):
    """What running one tool call gave, sent back to the model that asked for it."""

    call_id: str = Field(description="The ``ToolCall.id`` this answers.")
    content: str
    is_error: bool = Field(False, description="The call failed; ``content`` says why.")


class Message(BaseModel):
    """One turn of the conversation sent to a model.

    A plain turn is text. A tool-calling conversation adds two kinds of turn: the
    assistant's, carrying the ``tool_calls`` it made (with any text it wrote alongside),
    and the user's next one, carrying a ``tool_results`` entry for each of those calls
    (and optionally text after them). This is Anthropic's shape; the OpenAI adapter turns
    each result into its own ``role="tool"`` message, the local one into text.
    """

    role: Literal["user", "assistant"]
    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_results: list[ToolResult] = Field(default_factory=list)

    @model_validator(mode="after")
    def _parts_fit_the_role(self) -> Message:
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only an assistant message carries tool_calls")
        if self.tool_results and self.role != "user":
            raise ValueError("only a user message carries tool_results")
        return self

    @property
    def chars(self) -> int:
        """Characters of everything the message carries, to estimate its tokens."""
        size = len(self.content)
        for call in self.tool_calls:
            size += len(call.id) + len(call.name) + len(json.dumps(call.arguments))
        for result in self.tool_results:
            size += len(result.call_id) + len(result.content)
        return size

    def as_record(self) -> dict[str, Any]:
        """The message as the ledger keeps it: a plain turn as ``{role, content}``."""
        record: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            record["tool_calls"] = [call.model_dump() for call in self.tool_calls]
        if self.tool_results:
            record["tool_results"] = [result.model_dump() for result in self.tool_results]
        return record


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


ToolChoice = Literal["auto", "required", "none"]


class ModelRequest(BaseModel):
    """What the engine asks of a model.

    ``output_schema``, when set, is a JSON schema the answer must follow; each adapter uses
    its provider's strongest mechanism (grammar, response_format, forced tool call) and puts
    the JSON document in ``ModelResponse.text``.

    ``tools`` the model may call instead of answering; ``tool_choice`` says whether it may
    (``auto``), must call at least one (``required``) or must answer now (``none``, the
    tools still described so the conversation's earlier calls make sense).
    """

    system: str | None = None
    messages: list[Message]
    tools: list[ToolSpec] = Field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    output_schema: dict[str, Any] | None = None
    max_tokens: int = 1024
    temperature: float | None = None


StopReason = Literal["end", "max_tokens", "tool_use", "stop_sequence", "other"]


class ModelResponse(BaseModel):
    """What a model answered, normalised across providers. Its text and its tool calls'
    arguments are valid UTF-8 (``storable``): a provider's JSON may escape a lone
    surrogate, and an answer that cannot be stored would end the run that got it."""

    text: Annotated[str, AfterValidator(storable)] = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    stop_reason: StopReason = "end"
    model: str
    usage: Usage = Field(default_factory=Usage)

    def as_message(self) -> Message:
        """This answer as the assistant's turn of the conversation that goes on from it."""
        return Message(role="assistant", content=self.text, tool_calls=self.tool_calls)


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
        with Deadline(seconds):  # as the retry loop does it when this is not overridden
            return await self.complete(request)

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most models hold nothing
        """Release clients or files; safe to call more than once."""
