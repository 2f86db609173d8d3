"""A delegating run on each provider's real SDK, against the local fake of its API: the
tool calls come back over the wire, the delegations run in parallel, and the next turn
sends every call and result back in the provider's own format."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fake_provider import (
    FakeProvider,
    Received,
    Reply,
    anthropic_message,
    anthropic_tool_use,
    openai_completion,
    openai_tool_call,
)
from foreman import Orchestrator, Registry, RunStatus
from foreman.ledger.records import CallPurpose
from foreman.models.anthropic import AnthropicModel
from foreman.models.openai import OpenAIModel
from helpers import worker

TOPICS = ("llamas", "alpacas")


@pytest.fixture(autouse=True)
def _no_provider_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [n for n in os.environ if n.startswith(("ANTHROPIC_", "OPENAI_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as provider:
        yield provider


def anthropic_side(received: Received) -> Reply:
    body = received.body
    if "tools" not in body:  # a worker
        task = json.loads(body["messages"][0]["content"])
        return Reply(body=anthropic_message(f"notes on {task['instructions']}"))
    messages = body["messages"]
    if len(messages) == 1:  # turn 1: research both at once
        calls = [
            anthropic_tool_use("researcher", {"instructions": topic}, id=f"toolu_{topic}")
            for topic in TOPICS
        ]
        return Reply(body=anthropic_message("Researching both.", *calls, stop_reason="tool_use"))
    results = [block["content"] for block in messages[-1]["content"]]
    return Reply(body=anthropic_message("ANSWER " + " | ".join(results)))


def openai_side(received: Received) -> Reply:
    body = received.body
    messages = [m for m in body["messages"] if m["role"] != "system"]
    if "tools" not in body:
        task = json.loads(messages[0]["content"])
        return Reply(body=openai_completion(f"notes on {task['instructions']}"))
    if len(messages) == 1:
        calls = [
            openai_tool_call("researcher", json.dumps({"instructions": t}), id=f"call_{t}")
            for t in TOPICS
        ]
        return Reply(body=openai_completion(None, tool_calls=calls, finish_reason="tool_calls"))
    results = [m["content"] for m in messages if m["role"] == "tool"]
    return Reply(body=openai_completion("ANSWER " + " | ".join(results)))


def team() -> Registry:
    return Registry([worker("researcher"), worker("analyst")])


async def run_on(model: object) -> tuple[Orchestrator, object]:
    orchestrator = Orchestrator(team(), model=model, mode="delegate")
    try:
        result = await orchestrator.run("Compare llamas and alpacas")
    finally:
        await orchestrator.models.aclose()
    return orchestrator, result


async def check(orchestrator: Orchestrator, result) -> None:
    assert result.status is RunStatus.succeeded
    for topic in TOPICS:  # each delegation's output went back to the orchestrator
        assert f'"output": "notes on {topic}"' in result.answer
    calls = await orchestrator.store.list_calls(run_id=result.run_id)
    assert sorted(c.purpose for c in calls) == [CallPurpose.delegate] * 2 + [CallPurpose.task] * 2
    assert all(c.usage.total_tokens and not c.estimated for c in calls)


async def test_a_delegating_run_on_anthropic(fake: FakeProvider) -> None:
    fake.respond_with(anthropic_side)
    orchestrator, result = await run_on(
        AnthropicModel("claude-test", api_key="k", base_url=fake.url)
    )
    await check(orchestrator, result)
    second = [r.body for r in fake.requests if "tools" in r.body][1]
    assistant, results = second["messages"][1:]
    assert assistant["content"][0] == {"type": "text", "text": "Researching both."}
    assert [(b["type"], b["id"]) for b in assistant["content"][1:]] == [
        ("tool_use", "d1-1"),
        ("tool_use", "d1-2"),
    ]
    assert [(b["type"], b["tool_use_id"]) for b in results["content"]] == [
        ("tool_result", "d1-1"),
        ("tool_result", "d1-2"),
    ]
    assert [t["name"] for t in second["tools"]] == ["researcher", "analyst"]


async def test_a_delegating_run_on_openai(fake: FakeProvider) -> None:
    fake.respond_with(openai_side)
    model = OpenAIModel("gpt-test", api_key="k", base_url=f"{fake.url}/v1")
    orchestrator, result = await run_on(model)
    await check(orchestrator, result)
    second = [r.body for r in fake.requests if "tools" in r.body][1]
    assistant, *tool_messages = second["messages"][2:]
    assert [c["id"] for c in assistant["tool_calls"]] == ["d1-1", "d1-2"]
    assert [(m["role"], m["tool_call_id"]) for m in tool_messages] == [
        ("tool", "d1-1"),
        ("tool", "d1-2"),
    ]
