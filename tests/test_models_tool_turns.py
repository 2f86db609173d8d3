"""Multi-turn tool calling: a conversation that carries the assistant's tool calls and the
results sent back, through the real Anthropic and OpenAI SDKs against the local fake."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fake_provider import (
    FakeProvider,
    anthropic_message,
    anthropic_tool_use,
    openai_completion,
    openai_tool_call,
)
from foreman.models.anthropic import AnthropicModel
from foreman.models.base import (
    Message,
    ModelRequest,
    ModelResponse,
    ToolCall,
    ToolResult,
    ToolSpec,
)
from foreman.models.openai import OpenAIModel
from foreman.testing import ScriptedModel

SEARCH = ToolSpec(
    name="search",
    description="Search the web.",
    parameters={"type": "object", "properties": {"q": {"type": "string"}}},
)

#: A whole tool round: asked, two calls in parallel, their results (one failed), a follow-up.
CONVERSATION = [
    Message(role="user", content="Compare llamas and alpacas."),
    Message(
        role="assistant",
        content="Searching both.",
        tool_calls=[
            ToolCall(id="c1", name="search", arguments={"q": "llamas"}),
            ToolCall(id="c2", name="search", arguments={"q": "alpacas"}),
        ],
    ),
    Message(
        role="user",
        content="Be brief.",
        tool_results=[
            ToolResult(call_id="c1", content="Llamas are big."),
            ToolResult(call_id="c2", content="rate limited", is_error=True),
        ],
    ),
]


@pytest.fixture(autouse=True)
def _no_provider_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [n for n in os.environ if n.startswith(("ANTHROPIC_", "OPENAI_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as provider:
        yield provider


def test_tool_parts_belong_to_their_roles() -> None:
    with pytest.raises(ValueError, match="assistant"):
        Message(role="user", tool_calls=[ToolCall(id="x", name="t")])
    with pytest.raises(ValueError, match="user"):
        Message(role="assistant", tool_results=[ToolResult(call_id="x", content="")])


def test_a_response_becomes_the_assistant_turn() -> None:
    calls = [ToolCall(id="c1", name="search", arguments={"q": "x"})]
    turn = ModelResponse(text="hm", tool_calls=calls, model="m").as_message()
    assert turn == Message(role="assistant", content="hm", tool_calls=calls)


def test_the_ledger_record_of_a_plain_turn_is_unchanged() -> None:
    assert Message(role="user", content="hi").as_record() == {"role": "user", "content": "hi"}
    record = CONVERSATION[1].as_record()
    assert record["tool_calls"][1] == {"id": "c2", "name": "search", "arguments": {"q": "alpacas"}}


async def test_anthropic_sends_tool_use_and_tool_result_blocks(fake: FakeProvider) -> None:
    fake.reply(anthropic_message("Llamas are bigger."))
    model = AnthropicModel("claude-test", api_key="k", base_url=fake.url)
    try:
        response = await model.complete(ModelRequest(messages=CONVERSATION, tools=[SEARCH]))
    finally:
        await model.aclose()

    assert response.text == "Llamas are bigger."
    sent = fake.requests[0].body["messages"]
    assert sent[0] == {"role": "user", "content": "Compare llamas and alpacas."}
    assert sent[1] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Searching both."},
            {"type": "tool_use", "id": "c1", "name": "search", "input": {"q": "llamas"}},
            {"type": "tool_use", "id": "c2", "name": "search", "input": {"q": "alpacas"}},
        ],
    }
    # Every result of the turn in one user message, before its text, as the API requires.
    assert sent[2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "c1", "content": "Llamas are big."},
            {
                "type": "tool_result",
                "tool_use_id": "c2",
                "content": "rate limited",
                "is_error": True,
            },
            {"type": "text", "text": "Be brief."},
        ],
    }
    assert "tool_choice" not in fake.requests[0].body


@pytest.mark.parametrize(
    ("choice", "sent"), [("required", {"type": "any"}), ("none", {"type": "none"})]
)
async def test_anthropic_tool_choice(fake: FakeProvider, choice: str, sent: dict) -> None:
    fake.reply(anthropic_message(anthropic_tool_use("search", {"q": "x"}), stop_reason="tool_use"))
    model = AnthropicModel("claude-test", api_key="k", base_url=fake.url)
    try:
        request = ModelRequest(messages=CONVERSATION[:1], tools=[SEARCH], tool_choice=choice)
        await model.complete(request)
    finally:
        await model.aclose()
    assert fake.requests[0].body["tool_choice"] == sent


async def test_anthropic_structured_answer_or_a_tool_call(fake: FakeProvider) -> None:
    """With tools and an output schema, the model may call a tool first (``any``), and its
    tool calls come back to run; its ``respond`` call is the answer."""
    fake.reply(anthropic_message(anthropic_tool_use("search", {"q": "x"}), stop_reason="tool_use"))
    fake.reply(anthropic_message(anthropic_tool_use("respond", {"ok": True})))
    model = AnthropicModel("claude-test", api_key="k", base_url=fake.url)
    request = ModelRequest(
        messages=CONVERSATION[:1], tools=[SEARCH], output_schema={"type": "object"}
    )
    try:
        first = await model.complete(request)
        second = await model.complete(request)
    finally:
        await model.aclose()
    assert fake.requests[0].body["tool_choice"] == {"type": "any"}
    assert first.tool_calls == [ToolCall(id="toolu_1", name="search", arguments={"q": "x"})]
    assert (first.text, first.stop_reason) == ("", "tool_use")
    assert (second.text, second.tool_calls) == ('{"ok": true}', [])


async def test_openai_sends_tool_calls_and_tool_messages(fake: FakeProvider) -> None:
    fake.reply(openai_completion("Llamas are bigger."))
    model = OpenAIModel("gpt-test", api_key="k", base_url=f"{fake.url}/v1")
    try:
        request = ModelRequest(system="Be useful.", messages=CONVERSATION, tools=[SEARCH])
        response = await model.complete(request)
    finally:
        await model.aclose()

    assert response.text == "Llamas are bigger."
    body = fake.requests[0].body
    assert body["messages"] == [
        {"role": "system", "content": "Be useful."},
        {"role": "user", "content": "Compare llamas and alpacas."},
        {
            "role": "assistant",
            "content": "Searching both.",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "search", "arguments": '{"q": "llamas"}'},
                },
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "search", "arguments": '{"q": "alpacas"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "Llamas are big."},
        {"role": "tool", "tool_call_id": "c2", "content": "Error: rate limited"},
        {"role": "user", "content": "Be brief."},
    ]
    assert "tool_choice" not in body


async def test_openai_parallel_tool_calls_come_back_in_order(fake: FakeProvider) -> None:
    fake.reply(
        openai_completion(
            None,
            tool_calls=[
                openai_tool_call("search", '{"q": "a"}', id="call_A"),
                openai_tool_call("search", '{"q": "b"}', id="call_B"),
            ],
            finish_reason="tool_calls",
        )
    )
    model = OpenAIModel("gpt-test", api_key="k", base_url=f"{fake.url}/v1")
    try:
        request = ModelRequest(messages=CONVERSATION[:1], tools=[SEARCH], tool_choice="required")
        response = await model.complete(request)
    finally:
        await model.aclose()
    assert fake.requests[0].body["tool_choice"] == "required"
    assert [c.id for c in response.tool_calls] == ["call_A", "call_B"]
    # The turn goes back as it came: an assistant message with both calls, content null.
    follow_up = response.as_message()
    assert follow_up.tool_calls == response.tool_calls and follow_up.content == ""


async def test_the_scripted_model_makes_scripted_tool_calls() -> None:
    model = ScriptedModel(
        [
            [ToolCall(id="", name="search", arguments={"q": "a"}), ToolCall(id="mine", name="x")],
            ToolCall(id="", name="search"),
            "done",
        ]
    )
    request = ModelRequest(messages=CONVERSATION, tools=[SEARCH])
    first, second, third = [await model.complete(request) for _ in range(3)]
    assert [call.id for call in first.tool_calls] == ["call_1", "mine"]
    assert first.stop_reason == "tool_use" and first.usage.output_tokens > 0
    assert [call.id for call in second.tool_calls] == ["call_3"]
    assert (third.text, third.tool_calls) == ("done", [])
    # The tool parts of the conversation count as words sent.
    plain = ModelRequest(messages=[Message(role="user", content=m.content) for m in CONVERSATION])
    assert (
        third.usage.input_tokens > (await ScriptedModel(["x"]).complete(plain)).usage.input_tokens
    )
