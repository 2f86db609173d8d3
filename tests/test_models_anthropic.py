"""AnthropicModel against a local fake of the Messages API, through the real SDK client."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anthropic
import pytest

from fake_provider import FakeProvider, anthropic_error, anthropic_message, anthropic_tool_use
from foreman.errors import (
    ConfigError,
    ModelError,
    ModelTimeoutError,
    OutputValidationError,
    ProviderServerError,
    RateLimitError,
    TransientModelError,
)
from foreman.models.anthropic import AnthropicModel
from foreman.models.base import Message, ModelRequest, ToolCall, ToolSpec, Usage

KEY = "sk-ant-test-key"


@pytest.fixture(autouse=True)
def _no_anthropic_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep a developer's own key, base URL or profile out of the tests."""
    for name in [n for n in os.environ if n.startswith("ANTHROPIC_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))  # no profile in ~/.config/anthropic either


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as provider:
        yield provider


@pytest.fixture
async def model(fake: FakeProvider) -> AsyncIterator[AnthropicModel]:
    adapter = AnthropicModel("claude-test", api_key=KEY, base_url=fake.url)
    yield adapter
    await adapter.aclose()


def ask(text: str = "Hi", **fields: object) -> ModelRequest:
    return ModelRequest(messages=[Message(role="user", content=text)], **fields)


async def test_plain_text_answer(model: AnthropicModel, fake: FakeProvider) -> None:
    fake.reply(anthropic_message("Hello ", "world", input_tokens=11, output_tokens=7))

    response = await model.complete(ask("Say hello"))

    assert model.name == "anthropic:claude-test"
    assert response.text == "Hello world"
    assert response.tool_calls == []
    assert response.stop_reason == "end"
    assert response.model == "claude-test-20260101"  # what the provider reported
    assert (response.usage.input_tokens, response.usage.output_tokens) == (11, 7)
    [sent] = fake.requests
    assert sent.path == "/v1/messages"
    assert sent.body["model"] == "claude-test"
    assert sent.body["messages"] == [{"role": "user", "content": "Say hello"}]
    assert sent.body["max_tokens"] == 1024
    assert not {"system", "tools", "tool_choice", "temperature"} & sent.body.keys()
    # SDK 2.x sends the key as a bearer token, older ones as x-api-key.
    assert KEY in (sent.headers.get("x-api-key"), sent.headers.get("authorization", "")[7:])


async def test_system_prompt_history_and_settings(
    model: AnthropicModel, fake: FakeProvider
) -> None:
    fake.reply(anthropic_message("ok"))
    request = ModelRequest(
        system="You are terse.",
        messages=[
            Message(role="user", content="Q1"),
            Message(role="assistant", content="A1"),
            Message(role="user", content="Q2"),
        ],
        max_tokens=77,
        temperature=0.3,
    )

    await model.complete(request)

    body = fake.requests[0].body
    assert body["system"] == "You are terse."
    assert body["messages"] == [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
    ]
    assert body["max_tokens"] == 77
    # The 2026-10-21 API answers 400 to any temperature, so it must not be sent.
    assert "temperature" not in body


async def test_tools_are_sent_and_tool_calls_returned(
    model: AnthropicModel, fake: FakeProvider
) -> None:
    params = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    fake.reply(
        anthropic_message(
            "Let me look.",
            anthropic_tool_use("search", {"q": "llamas"}, id="toolu_A"),
            anthropic_tool_use("search", {"q": "alpacas"}, id="toolu_B"),
            stop_reason="tool_use",
        )
    )

    response = await model.complete(
        ask(tools=[ToolSpec(name="search", description="Search the web.", parameters=params)])
    )

    assert fake.requests[0].body["tools"] == [
        {"name": "search", "description": "Search the web.", "input_schema": params}
    ]
    assert "tool_choice" not in fake.requests[0].body
    assert response.text == "Let me look."
    assert response.tool_calls == [
        ToolCall(id="toolu_A", name="search", arguments={"q": "llamas"}),
        ToolCall(id="toolu_B", name="search", arguments={"q": "alpacas"}),
    ]
    assert response.stop_reason == "tool_use"


async def test_structured_output_is_a_forced_tool_call(
    model: AnthropicModel, fake: FakeProvider
) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}}
    fake.reply(
        anthropic_message(anthropic_tool_use("respond", {"answer": 42}), stop_reason="tool_use")
    )

    response = await model.complete(ask(output_schema=schema))

    body = fake.requests[0].body
    assert body["tool_choice"] == {"type": "tool", "name": "respond"}
    [tool] = body["tools"]
    assert (tool["name"], tool["input_schema"]) == ("respond", schema)
    assert json.loads(response.text) == {"answer": 42}
    assert response.tool_calls == []  # the answer, not a tool for the engine to run
    assert response.stop_reason == "end"


async def test_structured_output_keeps_the_callers_tools(
    model: AnthropicModel, fake: FakeProvider
) -> None:
    fake.reply(anthropic_message(anthropic_tool_use("respond", {"ok": True})))

    response = await model.complete(
        ask(tools=[ToolSpec(name="search")], output_schema={"type": "object"})
    )

    assert [t["name"] for t in fake.requests[0].body["tools"]] == ["search", "respond"]
    assert json.loads(response.text) == {"ok": True}


async def test_non_object_schema_is_wrapped_and_unwrapped(
    model: AnthropicModel, fake: FakeProvider
) -> None:
    schema = {"type": "array", "items": {"type": "string"}}
    fake.reply(anthropic_message(anthropic_tool_use("respond", {"value": ["a", "b"]})))

    response = await model.complete(ask(output_schema=schema))

    sent = fake.requests[0].body["tools"][0]["input_schema"]
    assert sent == {"type": "object", "properties": {"value": schema}, "required": ["value"]}
    assert json.loads(response.text) == ["a", "b"]


async def test_structured_output_without_the_forced_call_fails(
    model: AnthropicModel, fake: FakeProvider
) -> None:
    fake.reply(anthropic_message("{ unfinished", stop_reason="max_tokens"))

    with pytest.raises(OutputValidationError, match="max_tokens"):
        await model.complete(ask(output_schema={"type": "object"}))


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ("end_turn", "end"),
        ("max_tokens", "max_tokens"),
        ("tool_use", "tool_use"),
        ("stop_sequence", "stop_sequence"),
        ("refusal", "other"),
        ("pause_turn", "other"),
    ],
)
async def test_stop_reasons(
    model: AnthropicModel, fake: FakeProvider, wire: str, expected: str
) -> None:
    fake.reply(anthropic_message("x", stop_reason=wire))

    assert (await model.complete(ask())).stop_reason == expected


async def test_cached_prompt_tokens_are_kept_apart_from_input(
    model: AnthropicModel, fake: FakeProvider
) -> None:
    # Anthropic's input_tokens already excludes both kinds of cached prompt tokens.
    body = anthropic_message("x", input_tokens=3, output_tokens=2)
    body["usage"].update(cache_creation_input_tokens=10, cache_read_input_tokens=100)
    fake.reply(body)

    usage = (await model.complete(ask())).usage

    assert usage == Usage(
        input_tokens=3, output_tokens=2, cache_read_tokens=100, cache_write_tokens=10
    )


@pytest.mark.parametrize(
    ("status", "kind", "error", "transient"),
    [
        (429, "rate_limit_error", RateLimitError, True),
        (500, "api_error", ProviderServerError, True),
        (529, "overloaded_error", ProviderServerError, True),
        (400, "invalid_request_error", ModelError, False),
        (401, "authentication_error", ModelError, False),
        (404, "not_found_error", ModelError, False),
    ],
)
async def test_http_errors_map_to_foreman_errors(
    model: AnthropicModel,
    fake: FakeProvider,
    status: int,
    kind: str,
    error: type[ModelError],
    transient: bool,
) -> None:
    fake.reply(anthropic_error("the provider explains", kind), status=status)
    fake.reply(anthropic_message("a retry would get this"))

    with pytest.raises(error) as caught:
        await model.complete(ask())

    assert isinstance(caught.value, TransientModelError) is transient
    assert isinstance(caught.value.__cause__, anthropic.APIStatusError)
    message = str(caught.value)
    assert "anthropic:claude-test" in message
    # The provider's own words, not the SDK's dump of the whole error body.
    assert f"API answered {status}: the provider explains." in message
    assert len(fake.requests) == 1  # max_retries=0: retrying is the engine's job


async def test_unauthorized_says_to_check_the_key(
    model: AnthropicModel, fake: FakeProvider
) -> None:
    fake.reply(anthropic_error("invalid x-api-key", "authentication_error"), status=401)

    with pytest.raises(ModelError, match="ANTHROPIC_API_KEY"):
        await model.complete(ask())


async def test_timeout_maps_to_model_timeout(fake: FakeProvider) -> None:
    client = anthropic.AsyncAnthropic(api_key=KEY, base_url=fake.url, max_retries=0, timeout=0.1)
    fake.hang()

    with pytest.raises(ModelTimeoutError) as caught:
        await AnthropicModel("claude-test", client=client).complete(ask())

    assert isinstance(caught.value.__cause__, anthropic.APITimeoutError)
    await client.close()


async def test_unreachable_server_is_a_provider_server_error() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago refuses connections
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    model = AnthropicModel("claude-test", api_key=KEY, base_url=f"http://127.0.0.1:{port}")

    with pytest.raises(ProviderServerError, match="could not reach"):
        await model.complete(ask())
    await model.aclose()


def test_missing_credentials_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        AnthropicModel("claude-test")


async def test_aclose_closes_only_a_client_it_created(fake: FakeProvider) -> None:
    own = AnthropicModel("claude-test", api_key=KEY, base_url=fake.url)
    given = anthropic.AsyncAnthropic(api_key=KEY, base_url=fake.url)
    borrowed = AnthropicModel("claude-test", client=given)

    await own.aclose()
    await borrowed.aclose()

    assert own._client.is_closed()
    assert not given.is_closed()
    await given.close()
