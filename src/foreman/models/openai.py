"""OpenAI, and any server speaking its chat-completions API, through the official SDK.

Ollama, vLLM, LM Studio and llama.cpp servers all speak chat completions, so one adapter
serves them: point ``base_url`` (or ``OPENAI_BASE_URL``) at the server. Such servers need no
key, so a placeholder is sent when none is configured.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from typing import Any

import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion

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
    ToolResult,
    Usage,
)
from foreman.models.deprecation import warn_if_deprecated
from foreman.models.sdk_errors import translate

#: Sent as the key to local servers that ignore it; the SDK refuses to run with no key at all.
PLACEHOLDER_API_KEY = "not-needed"

_OFFICIAL_HOST = "api.openai.com"

#: Reasoning models (gpt-5 and later, the o-series) reject any temperature but the default.
_REASONING_MODEL = re.compile(r"^(o\d|gpt-([5-9]|\d{2,}))")

_FINISH_REASONS: dict[str, StopReason] = {
    "stop": "end",
    "length": "max_tokens",
    "tool_calls": "tool_use",
}

_HINTS = {
    401: "Check the API key (OPENAI_API_KEY).",
    404: "Check the model name and the base URL (OPENAI_BASE_URL); local servers must have "
    "the model loaded or pulled.",
}


class OpenAIModel(Model):
    """A chat-completions model; ``name`` is ``openai:<model_name>``."""

    def __init__(
        self,
        model_name: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        client: AsyncOpenAI | None = None,
    ) -> None:
        self.model_name = model_name
        self.name = f"openai:{model_name}"
        warn_if_deprecated(self.name)
        self._owns_client = client is None
        if client is None:
            # The SDK itself falls back to OPENAI_API_KEY and OPENAI_BASE_URL.
            api_key = api_key or os.environ.get("OPENAI_API_KEY")
            if not api_key:
                if not (base_url or os.environ.get("OPENAI_BASE_URL")):
                    raise ConfigError(
                        f"{self.name}: no OpenAI API key. Set OPENAI_API_KEY, or set "
                        "OPENAI_BASE_URL to a local OpenAI-compatible server (Ollama, vLLM...)."
                    )
                api_key = PLACEHOLDER_API_KEY
            # max_retries=0: the engine owns retries, so a call must fail fast and only once.
            client = AsyncOpenAI(
                api_key=api_key,
                base_url=base_url,
                max_retries=0,
                timeout=self.default_call_timeout,
            )
        self._client = client
        # The SDK imports each API's module at its first use; do it now, not inside the loop.
        _ = client.chat.completions

    async def complete(self, request: ModelRequest) -> ModelResponse:
        return await self._complete(request, None)  # the client's own timeout

    async def complete_within(self, request: ModelRequest, seconds: float) -> ModelResponse:
        # The SDK's own timeout only bounds each network read; this one bounds the whole call.
        async with asyncio.timeout(seconds):
            return await self._complete(request, seconds)

    async def _complete(self, request: ModelRequest, seconds: float | None) -> ModelResponse:
        messages: list[dict[str, Any]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        for message in request.messages:
            messages += _messages(message)
        kwargs: dict[str, Any] = {"model": self.model_name, "messages": messages}
        # OpenAI's reasoning models reject the deprecated max_tokens, while many compatible
        # servers only know max_tokens: use the new name only where it is sure to work.
        token_param = "max_completion_tokens" if self._is_official() else "max_tokens"
        kwargs[token_param] = request.max_tokens
        if request.temperature is not None and self.accepts_temperature():
            kwargs["temperature"] = request.temperature
        if request.tools:
            kwargs["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    },
                }
                for t in request.tools
            ]
            if request.tool_choice != "auto":  # the API's default; some servers know no other
                kwargs["tool_choice"] = request.tool_choice
        if request.output_schema is not None:
            kwargs["response_format"] = {
                "type": "json_schema",
                # strict=False: strict mode demands every property be required and no extra
                # keys allowed, which ordinary schemas rarely satisfy.
                "json_schema": {"name": "output", "schema": request.output_schema, "strict": False},
            }
        try:
            completion = await self._client.chat.completions.create(**kwargs, **_timeout(seconds))
        except openai.APIError as exc:
            raise _translate(exc, self.name) from exc
        try:
            return self._to_response(completion)
        except ModelError as exc:  # unusable, but answered and billed: keep its tokens
            exc.answered = ModelResponse(model=completion.model, usage=_usage(completion))
            raise

    def accepts_temperature(self) -> bool:
        """False for reasoning models, which answer 400 to any non-default temperature."""
        return not _REASONING_MODEL.match(self.model_name)

    def _is_official(self) -> bool:
        return self._client.base_url.host == _OFFICIAL_HOST

    def _to_response(self, completion: ChatCompletion) -> ModelResponse:
        if not completion.choices:
            raise OutputValidationError(f"{self.name} answered with no choices; retry the call.")
        choice = completion.choices[0]
        return ModelResponse(
            text=choice.message.content or "",
            tool_calls=[
                ToolCall(
                    id=call.id,
                    name=call.function.name,
                    arguments=self._arguments(call.function.name, call.function.arguments),
                )
                for call in choice.message.tool_calls or []
                if call.type == "function"
            ],
            stop_reason=_FINISH_REASONS.get(choice.finish_reason, "other"),
            model=completion.model,
            usage=_usage(completion),
        )

    def _arguments(self, tool: str, raw: str) -> dict[str, Any]:
        """Parse a tool call's JSON arguments; small local models often get them wrong."""
        if not raw.strip():  # some servers send "" for a call without arguments
            return {}
        try:
            arguments = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise OutputValidationError(
                f"{self.name} called tool {tool!r} with arguments that are not valid JSON "
                f"({exc.msg}): {raw[:200]!r}. Retrying usually helps."
            ) from exc
        if not isinstance(arguments, dict):
            raise OutputValidationError(
                f"{self.name} called tool {tool!r} with arguments that are not a JSON object: "
                f"{raw[:200]!r}. Retrying usually helps."
            )
        return arguments

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.close()


def _messages(message: Message) -> list[dict[str, Any]]:
    """One turn in the chat-completions shape: each tool result is a ``tool`` message of its
    own (the text of the turn, if any, follows them), and an assistant turn's tool calls
    go with it, their arguments as the JSON string the API sends them as."""
    if not (message.tool_calls or message.tool_results):
        return [{"role": message.role, "content": message.content}]
    if message.tool_calls:
        return [
            {
                "role": "assistant",
                "content": message.content or None,
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                    }
                    for call in message.tool_calls
                ],
            }
        ]
    sent: list[dict[str, Any]] = [
        {"role": "tool", "tool_call_id": result.call_id, "content": _result_text(result)}
        for result in message.tool_results
    ]
    if message.content:
        sent.append({"role": "user", "content": message.content})
    return sent


def _result_text(result: ToolResult) -> str:
    """A tool message has no error flag: a failed call says so in its text."""
    return f"Error: {result.content}" if result.is_error else result.content


def _usage(completion: ChatCompletion) -> Usage:
    """Tokens, with the cached part of the prompt apart: it is billed at its own rate."""
    usage = completion.usage
    if usage is None:
        return Usage()
    details = usage.prompt_tokens_details
    cached = (details.cached_tokens or 0) if details else 0
    return Usage(
        input_tokens=usage.prompt_tokens - cached,
        output_tokens=usage.completion_tokens,
        cache_read_tokens=cached,
    )


def _timeout(seconds: float | None) -> dict[str, float]:
    """The per-request ``timeout`` option, when the caller set one."""
    return {} if seconds is None else {"timeout": seconds}


def _provider_message(exc: openai.APIStatusError) -> str:
    """The API's own explanation (``error.message``, the SDK unwraps ``error``), else a summary."""
    message = exc.body.get("message") if isinstance(exc.body, dict) else None
    return (message if isinstance(message, str) else exc.message).rstrip(".")


def _translate(exc: openai.APIError, name: str) -> ModelError:
    return translate(
        exc,
        openai,
        name=name,
        provider="OpenAI API",
        provider_message=_provider_message,
        connection_hint="Check the network and OPENAI_BASE_URL / base_url; for a local server, "
        "check that it is running.",
        hints=_HINTS,
    )
