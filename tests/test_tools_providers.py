"""A worker's tool loop on the real Anthropic and OpenAI SDKs, against the local fake
provider: the tools offered, the calls made (two in one turn), their results sent back in
each API's wire format, the forced last turn, and every turn on the books."""

from __future__ import annotations

import json
import os
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
from foreman import Orchestrator
from foreman.models.anthropic import AnthropicModel
from foreman.models.openai import OpenAIModel
from foreman.results import RunStatus
from foreman.tools import Toolbox, tool
from foreman.workers import Registry
from helpers import plan_of, task, worker

PLAN = plan_of(task("t1", "clerk"))
LOOKED_UP: list[str] = []


@tool
def lookup(term: str) -> str:
    """Look a term up."""
    LOOKED_UP.append(term)
    return f"{term} means something"


@pytest.fixture(autouse=True)
def _no_provider_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [n for n in os.environ if n.startswith(("ANTHROPIC_", "OPENAI_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    LOOKED_UP.clear()


def anthropic_turns(request: Received) -> Reply:
    """Two lookups in one turn, then an answer from their results."""
    last = request.body["messages"][-1]["content"]
    if isinstance(last, str):
        calls = [
            anthropic_tool_use("lookup", {"term": "dns"}, id="toolu_1"),
            anthropic_tool_use("delete_all", {}, id="toolu_2"),
        ]
        return Reply(body=anthropic_message(*calls, stop_reason="tool_use"))
    results = [block["content"] for block in last if block["type"] == "tool_result"]
    return Reply(body=anthropic_message(f"answer from: {results[0]}"))


def openai_turns(request: Received) -> Reply:
    messages = request.body["messages"]
    if messages[-1]["role"] != "tool":
        calls = [
            openai_tool_call("lookup", json.dumps({"term": "dns"}), id="call_a"),
            openai_tool_call("delete_all", "{}", id="call_b"),
        ]
        return Reply(body=openai_completion(None, tool_calls=calls, finish_reason="tool_calls"))
    results = [m["content"] for m in messages if m["role"] == "tool"]
    return Reply(body=openai_completion(f"answer from: {results[0]}"))


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_a_tool_loop_on_each_provider(provider: str) -> None:
    team = Registry([worker("clerk", tools=("lookup",))], tools=Toolbox([lookup]))
    with FakeProvider() as fake:
        if provider == "anthropic":
            fake.respond_with(anthropic_turns)
            model = AnthropicModel("claude-test", api_key="k", base_url=fake.url)
        else:
            fake.respond_with(openai_turns)
            model = OpenAIModel("gpt-test", api_key="k", base_url=fake.url + "/v1")
        async with Orchestrator(team, model=model, assembly="concat") as orchestrator:
            result = await orchestrator.run("x", plan=PLAN)

        assert result.status is RunStatus.succeeded
        assert result.tasks["t1"].output == "answer from: dns means something"
        assert LOOKED_UP == ["dns"]  # delete_all, outside the allow-list, never ran
        first, second = (r.body for r in fake.requests)
        offered = [
            t["name"] if provider == "anthropic" else t["function"]["name"] for t in first["tools"]
        ]
        assert offered == ["lookup"]
        if provider == "anthropic":
            results = second["messages"][-1]["content"]
            assert [(r["tool_use_id"], r.get("is_error", False)) for r in results] == [
                ("toolu_1", False),
                ("toolu_2", True),
            ]
        else:
            tool_messages = [m for m in second["messages"] if m["role"] == "tool"]
            assert [m["tool_call_id"] for m in tool_messages] == ["call_a", "call_b"]
            assert "not allowed" in tool_messages[1]["content"]
        assert result.calls == 2 == len(fake.bill)  # every turn on the books
