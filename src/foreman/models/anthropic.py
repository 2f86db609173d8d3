"""Claude through the official ``anthropic`` SDK (Messages API).

Structured output is forced with a tool call: the schema becomes the input schema of a tool
the model must call, which Claude follows far more reliably than "answer in JSON" prose.

Sampling temperature is deliberately not sent: SDK 2.x dropped the parameter and API version
2026-10-21 rejects ``temperature`` with a 400 on every model, even at its default value.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anthropic
from anthropic import AsyncAnthropic
from anthropic.types import Message as AnthropicMessage

from foreman.errors import (
    ConfigError,
    ModelError,
    OutputValidationError,
)
from foreman.models.base import (
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    StopReason,
    ToolCall,
    Usage,
)
from foreman.models.deprecation import warn_if_deprecated
from foreman.models.sdk_errors import translate

#: Name of the tool that carries a structured answer; never surfaced as a tool call.
RESPOND_TOOL = "respond"

_STOP_REASONS: dict[str, StopReason] = {
    "end_turn": "end",
    "max_tokens": "max_tokens",
    "tool_use": "tool_use",
    "stop_sequence": "stop_sequence",
}

_HINTS = {
    401: "Check the API key (ANTHROPIC_API_KEY).",
    404: "Check the model name and base URL.",
}


class AnthropicModel(Model):
    """A Claude model; ``name`` is ``anthropic:<model_name>``."""

    def __init__(
        self,
        model_name: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        client: AsyncAnthropic | None = None,
    ) -> None:
        self.model_name = model_name
        self.name = f"anthropic:{model_name}"
        warn_if_deprecated(self.name)
        self._owns_client = client is None
        if client is None:
            # max_retries=0: the engine owns retries, so a call must fail fast and only once.
            try:
                client = AsyncAnthropic(
                    api_key=api_key,
                    base_url=base_url,
                    max_retries=0,
                    timeout=self.default_call_timeout,
                )
            except anthropic.CredentialsError as exc:  # a broken profile in the config dir
                raise ConfigError(f"{self.name}: {exc}") from exc
            # Without this check the SDK only fails at the first call, with a bare TypeError.
            if not (client.api_key or client.auth_token or getattr(client, "credentials", None)):
                raise ConfigError(
                    f"{self.name}: no Anthropic credentials found. Set ANTHROPIC_API_KEY "
                    "(or pass api_key=), or pick another model with FOREMAN_MODEL."
                )
        self._client = client
        # The SDK imports each API's module at its first use; do it now, not inside the loop.
        _ = client.messages

    async def complete(self, request: ModelRequest) -> ModelResponse:
        return await self._complete(request, None)  # the client's own timeout

    async def complete_within(self, request: ModelRequest, seconds: float) -> ModelResponse:
        # The SDK's own timeout only bounds each network read; this one bounds the whole call.
        async with asyncio.timeout(seconds):
            return await self._complete(request, seconds)

    async def _complete(self, request: ModelRequest, seconds: float | None) -> ModelResponse:
        kwargs: dict[str, Any] = {
            "model": self.model_name,
            "max_tokens": request.max_tokens,
            "messages": [_message(m) for m in request.messages],
        }
        if request.system:
            kwargs["system"] = request.system
        tools = [
            {"name": t.name, "description": t.description, "input_schema": t.parameters}
            for t in request.tools
        ]
        if request.output_schema is not None:
            tools.append(
                {
                    "name": RESPOND_TOOL,
                    "description": "Give your final answer; its input is the whole answer.",
                    "input_schema": _object_schema(request.output_schema),
                }
            )
        if tool_choice := _tool_choice(request):
            kwargs["tool_choice"] = tool_choice
        if tools:
            kwargs["tools"] = tools
        try:
            message = await self._client.messages.create(**kwargs, **_timeout(seconds))
        except anthropic.APIError as exc:
            raise _translate(exc, self.name) from exc
        try:
            return self._to_response(message, request)
        except ModelError as exc:  # unusable, but answered and billed: keep its tokens
            exc.answered = ModelResponse(model=message.model, usage=_usage(message))
            raise

    def _to_response(self, message: AnthropicMessage, request: ModelRequest) -> ModelResponse:
        stop_reason = _STOP_REASONS.get(message.stop_reason or "", "other")
        tool_calls = [
            ToolCall(id=b.id, name=b.name, arguments=b.input)
            for b in message.content
            if b.type == "tool_use"
        ]
        if request.output_schema is None:
            text = "".join(b.text for b in message.content if b.type == "text")
        elif tool_calls and all(c.name != RESPOND_TOOL for c in tool_calls):
            text = ""  # it chose one of the caller's tools over answering: run them first
        else:
            text = self._structured_answer(message, tool_calls, request.output_schema)
            tool_calls = []
            # The forced call is the answer itself, not a tool the engine should run.
            stop_reason = "end" if stop_reason == "tool_use" else stop_reason
        return ModelResponse(
            text=text,
            tool_calls=tool_calls,
            stop_reason=stop_reason,
            model=message.model,
            usage=_usage(message),
        )

    def _structured_answer(
        self, message: AnthropicMessage, calls: list[ToolCall], schema: dict[str, Any]
    ) -> str:
        answer = next((c for c in calls if c.name == RESPOND_TOOL), None)
        if answer is None:
            raise OutputValidationError(
                f"{self.name} did not make the forced {RESPOND_TOOL!r} tool call "
                f"(stop reason {message.stop_reason!r}), so there is no structured answer. "
                "Retrying usually helps; if the stop reason is max_tokens, raise max_tokens."
            )
        if _is_object(schema):
            return json.dumps(answer.arguments)
        return json.dumps(answer.arguments.get("value"))

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.close()


def _message(message: Message) -> dict[str, Any]:
    """One turn in the Messages API's shape: tool results lead their user turn, as the API
    requires, and a turn with tool calls keeps its text before them."""
    if not (message.tool_calls or message.tool_results):
        return {"role": message.role, "content": message.content}
    blocks: list[dict[str, Any]] = []
    for result in message.tool_results:
        block = {"type": "tool_result", "tool_use_id": result.call_id, "content": result.content}
        if result.is_error:
            block["is_error"] = True
        blocks.append(block)
    if message.content:  # an empty text block is refused
        blocks.append({"type": "text", "text": message.content})
    blocks += [
        {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
        for call in message.tool_calls
    ]
    return {"role": message.role, "content": blocks}


def _tool_choice(request: ModelRequest) -> dict[str, str] | None:
    """The API's ``tool_choice``; None keeps its default (``auto``).

    A structured answer is the forced ``respond`` call, unless the caller's tools are there
    too: then the model must call one of them or ``respond`` (``any``), and under ``none``
    it must answer now.
    """
    if request.output_schema is not None:
        if not request.tools or request.tool_choice == "none":
            return {"type": "tool", "name": RESPOND_TOOL}
        return {"type": "any"}
    if not request.tools or request.tool_choice == "auto":
        return None
    return {"type": "any" if request.tool_choice == "required" else "none"}


def _is_object(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "object"


def _usage(message: AnthropicMessage) -> Usage:
    """Anthropic's input_tokens already excludes the cached prompt tokens it reports apart;
    each kind is billed at its own rate, so they stay apart."""
    usage = message.usage
    return Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_input_tokens or 0,
        cache_write_tokens=usage.cache_creation_input_tokens or 0,
    )


def _object_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Tool inputs must be JSON objects, so a non-object schema is wrapped as ``{"value": ...}``."""
    if _is_object(schema):
        return schema
    return {"type": "object", "properties": {"value": schema}, "required": ["value"]}


def _timeout(seconds: float | None) -> dict[str, float]:
    """The per-request ``timeout`` option, when the caller set one."""
    return {} if seconds is None else {"timeout": seconds}


def _provider_message(exc: anthropic.APIStatusError) -> str:
    """The API's own explanation (``error.message`` in the body), else the SDK's summary."""
    error = exc.body.get("error") if isinstance(exc.body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return (message if isinstance(message, str) else exc.message).rstrip(".")


def _translate(exc: anthropic.APIError, name: str) -> ModelError:
    return translate(
        exc,
        anthropic,
        name=name,
        provider="Anthropic API",
        provider_message=_provider_message,
        connection_hint="Check the network and ANTHROPIC_BASE_URL / base_url.",
        hints=_HINTS,
    )
