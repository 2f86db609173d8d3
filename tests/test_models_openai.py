"""OpenAIModel against a local fake of the chat-completions API, through the real SDK client."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest

from fake_provider import FakeProvider, openai_completion, openai_error, openai_tool_call
from foreman.errors import (
    ConfigError,
    ModelError,
    ModelTimeoutError,
    OutputValidationError,
    ProviderServerError,
    RateLimitError,
    TransientModelError,
)
from foreman.models.base import Message, ModelRequest, ToolCall, ToolSpec, Usage
from foreman.models.openai import OpenAIModel

KEY = "sk-openai-test-key"


@pytest.fixture(autouse=True)
def _no_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep a developer's own key or base URL out of the tests."""
    for name in [n for n in os.environ if n.startswith("OPENAI_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as provider:
        yield provider


@pytest.fixture
async def model(fake: FakeProvider) -> AsyncIterator[OpenAIModel]:
    adapter = OpenAIModel("gpt-test", api_key=KEY, base_url=f"{fake.url}/v1")
    yield adapter
    await adapter.aclose()


def ask(text: str = "Hi", **fields: Any) -> ModelRequest:
    return ModelRequest(messages=[Message(role="user", content=text)], **fields)


async def test_plain_text_answer(model: OpenAIModel, fake: FakeProvider) -> None:
    fake.reply(
        openai_completion("Hello world", usage={"prompt_tokens": 13, "completion_tokens": 5})
    )

    response = await model.complete(ask("Say hello"))

    assert model.name == "openai:gpt-test"
    assert response.text == "Hello world"
    assert response.tool_calls == []
    assert response.stop_reason == "end"
    assert response.model == "gpt-test-2026-01-01"  # what the provider reported
    assert (response.usage.input_tokens, response.usage.output_tokens) == (13, 5)
    [sent] = fake.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.body["model"] == "gpt-test"
    assert sent.body["messages"] == [{"role": "user", "content": "Say hello"}]
    # Compatible servers (Ollama, llama.cpp...) know max_tokens; see the official-host test.
    assert sent.body["max_tokens"] == 1024
    unset = {"max_completion_tokens", "temperature", "tools", "response_format"}
    assert not unset & sent.body.keys()


async def test_system_prompt_history_and_settings(model: OpenAIModel, fake: FakeProvider) -> None:
    fake.reply(openai_completion("ok"))
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
    assert body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
    ]
    assert body["max_tokens"] == 77
    assert body["temperature"] == 0.3


async def test_tools_are_sent_and_tool_calls_returned(
    model: OpenAIModel, fake: FakeProvider
) -> None:
    params = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    fake.reply(
        openai_completion(
            None,
            tool_calls=[
                openai_tool_call("search", '{"q": "llamas"}', id="call_A"),
                openai_tool_call("search", '{"q": "alpacas"}', id="call_B"),
            ],
            finish_reason="tool_calls",
        )
    )

    response = await model.complete(
        ask(tools=[ToolSpec(name="search", description="Search the web.", parameters=params)])
    )

    assert fake.requests[0].body["tools"] == [
        {
            "type": "function",
            "function": {"name": "search", "description": "Search the web.", "parameters": params},
        }
    ]
    assert response.text == ""
    assert response.tool_calls == [
        ToolCall(id="call_A", name="search", arguments={"q": "llamas"}),
        ToolCall(id="call_B", name="search", arguments={"q": "alpacas"}),
    ]
    assert response.stop_reason == "tool_use"


async def test_empty_tool_arguments_mean_no_arguments(
    model: OpenAIModel, fake: FakeProvider
) -> None:
    fake.reply(openai_completion(None, tool_calls=[openai_tool_call("now", "")]))

    response = await model.complete(ask(tools=[ToolSpec(name="now")]))

    assert response.tool_calls == [ToolCall(id="call_1", name="now", arguments={})]


@pytest.mark.parametrize("arguments", ['{"q": "llam', '["not", "an", "object"]'])
async def test_malformed_tool_arguments_fail_validation(
    model: OpenAIModel, fake: FakeProvider, arguments: str
) -> None:
    fake.reply(openai_completion(None, tool_calls=[openai_tool_call("search", arguments)]))

    with pytest.raises(OutputValidationError, match="'search'"):
        await model.complete(ask(tools=[ToolSpec(name="search")]))


async def test_structured_output_uses_response_format(
    model: OpenAIModel, fake: FakeProvider
) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}}
    fake.reply(openai_completion('{"answer": 42}'))

    response = await model.complete(ask(output_schema=schema))

    assert fake.requests[0].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": False},
    }
    assert json.loads(response.text) == {"answer": 42}
    assert response.stop_reason == "end"


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ("stop", "end"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "other"),
    ],
)
async def test_finish_reasons(
    model: OpenAIModel, fake: FakeProvider, wire: str, expected: str
) -> None:
    fake.reply(openai_completion("x", finish_reason=wire))

    assert (await model.complete(ask())).stop_reason == expected


async def test_cached_prompt_tokens_are_kept_apart_from_input(
    model: OpenAIModel, fake: FakeProvider
) -> None:
    # OpenAI's prompt_tokens includes the cached ones; they are billed at their own rate.
    usage = {"prompt_tokens": 130, "completion_tokens": 5, "total_tokens": 135}
    body = openai_completion("x", usage=usage)
    body["usage"]["prompt_tokens_details"] = {"cached_tokens": 100}
    fake.reply(body)

    assert (await model.complete(ask())).usage == Usage(
        input_tokens=30, output_tokens=5, cache_read_tokens=100
    )


@pytest.mark.filterwarnings("ignore::foreman.models.deprecation.ModelDeprecationWarning")
@pytest.mark.parametrize("model_id", ["gpt-5.4-mini", "gpt-5", "o3", "o4-mini", "o1"])
async def test_reasoning_models_are_sent_no_temperature(fake: FakeProvider, model_id: str) -> None:
    # They answer 400 to any non-default temperature; the planner always asks for 0.
    model = OpenAIModel(model_id, api_key=KEY, base_url=f"{fake.url}/v1")
    fake.reply(openai_completion("x"))

    await model.complete(ask(temperature=0.0))

    assert "temperature" not in fake.requests[0].body
    await model.aclose()


async def test_missing_usage_counts_as_zero(model: OpenAIModel, fake: FakeProvider) -> None:
    fake.reply(openai_completion("x", usage={}))

    usage = (await model.complete(ask())).usage

    assert (usage.input_tokens, usage.output_tokens) == (0, 0)


@pytest.mark.parametrize(
    ("status", "error", "transient"),
    [
        (429, RateLimitError, True),
        (500, ProviderServerError, True),
        (503, ProviderServerError, True),
        (400, ModelError, False),
        (401, ModelError, False),
        (404, ModelError, False),
    ],
)
async def test_http_errors_map_to_foreman_errors(
    model: OpenAIModel,
    fake: FakeProvider,
    status: int,
    error: type[ModelError],
    transient: bool,
) -> None:
    fake.reply(openai_error("the provider explains"), status=status)
    fake.reply(openai_completion("a retry would get this"))

    with pytest.raises(error) as caught:
        await model.complete(ask())

    assert isinstance(caught.value, TransientModelError) is transient
    assert isinstance(caught.value.__cause__, openai.APIStatusError)
    message = str(caught.value)
    assert "openai:gpt-test" in message
    # The provider's own words, not the SDK's dump of the whole error body.
    assert f"API answered {status}: the provider explains." in message
    assert len(fake.requests) == 1  # max_retries=0: retrying is the engine's job


async def test_unauthorized_says_to_check_the_key(model: OpenAIModel, fake: FakeProvider) -> None:
    fake.reply(openai_error("Incorrect API key provided"), status=401)

    with pytest.raises(ModelError, match="OPENAI_API_KEY"):
        await model.complete(ask())


async def test_timeout_maps_to_model_timeout(fake: FakeProvider) -> None:
    client = openai.AsyncOpenAI(api_key=KEY, base_url=f"{fake.url}/v1", max_retries=0, timeout=0.1)
    fake.hang()

    with pytest.raises(ModelTimeoutError) as caught:
        await OpenAIModel("gpt-test", client=client).complete(ask())

    assert isinstance(caught.value.__cause__, openai.APITimeoutError)
    await client.close()


async def test_unreachable_server_is_a_provider_server_error() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago refuses connections
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    model = OpenAIModel("gpt-test", base_url=f"http://127.0.0.1:{port}/v1")

    with pytest.raises(ProviderServerError, match="could not reach"):
        await model.complete(ask())
    await model.aclose()


async def test_base_url_from_env_needs_no_key(
    fake: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", f"{fake.url}/v1")
    fake.reply(openai_completion("from a local server"))
    model = OpenAIModel("llama3.2")

    response = await model.complete(ask())

    assert response.text == "from a local server"
    assert fake.requests[0].headers["authorization"] == "Bearer not-needed"
    await model.aclose()


async def test_key_from_env_is_used_with_a_custom_base_url(
    fake: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    fake.reply(openai_completion("ok"))
    model = OpenAIModel("gpt-test", base_url=f"{fake.url}/v1")

    await model.complete(ask())

    assert fake.requests[0].headers["authorization"] == "Bearer sk-from-env"
    await model.aclose()


def test_no_key_and_no_base_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIModel("gpt-test")


async def test_official_endpoint_gets_max_completion_tokens() -> None:
    """api.openai.com's reasoning models reject max_tokens, so the new name is used there."""
    httpx2 = pytest.importorskip("httpx2")  # the SDK's HTTP library; no network is touched
    sent: list[dict[str, Any]] = []

    def handler(request: Any) -> Any:
        sent.append(json.loads(request.content))
        return httpx2.Response(200, json=openai_completion("ok"))

    http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    client = openai.AsyncOpenAI(api_key=KEY, http_client=http, max_retries=0)

    await OpenAIModel("gpt-test", client=client).complete(ask(max_tokens=55))

    assert sent[0]["max_completion_tokens"] == 55
    assert "max_tokens" not in sent[0]
    await client.close()


async def test_aclose_closes_only_a_client_it_created(fake: FakeProvider) -> None:
    own = OpenAIModel("gpt-test", api_key=KEY, base_url=f"{fake.url}/v1")
    given = openai.AsyncOpenAI(api_key=KEY, base_url=f"{fake.url}/v1")
    borrowed = OpenAIModel("gpt-test", client=given)

    await own.aclose()
    await borrowed.aclose()

    assert own._client.is_closed()
    assert not given.is_closed()
    await given.close()
