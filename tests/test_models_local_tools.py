"""Tool calling on the local model: the grammar, the prompt, and reading the answer, with a
stand-in for llama.cpp's model object; one cheap round on the real bundled model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from foreman.errors import OutputValidationError
from foreman.models import local as local_module
from foreman.models.base import Message, ModelRequest, ToolCall, ToolResult, ToolSpec
from foreman.models.local import LocalModel
from foreman.models.local_grammar import _gbnf
from foreman.models.local_tools import tool_schema

RESEARCH = ToolSpec(
    name="research",
    description="Research one company.",
    parameters={
        "type": "object",
        "properties": {"company": {"type": "string", "maxLength": 40}},
        "required": ["company"],
    },
)
ASK = Message(role="user", content="Compare Acme and Globex.")


class ScriptedLlama:
    """Stands in for ``llama_cpp.Llama``: answers from a list, keeps what it was sent."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.sent: list[dict[str, Any]] = []

    def create_chat_completion(self, messages: list[dict[str, str]], **options: Any) -> dict:
        self.sent.append({"messages": messages, **options})
        return {
            "choices": [{"message": {"content": self.answers.pop(0)}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 9},
        }


@pytest.fixture
def scripted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedLlama]:
    path = tmp_path / "stand-in.gguf"
    path.write_bytes(b"not read")
    llama, thread = ScriptedLlama([]), ThreadPoolExecutor(max_workers=1)
    monkeypatch.setitem(local_module._loaded, path, (llama, thread, local_module._Stopper()))
    llama.model = LocalModel(str(path))  # type: ignore[attr-defined]
    yield llama
    thread.shutdown()


async def test_a_free_text_answer_under_the_grammar_is_kept_from_looping(
    scripted: ScriptedLlama,
) -> None:
    scripted.answers.append('{"answer": "Acme."}')
    model: LocalModel = scripted.model  # type: ignore[attr-defined]
    await model.complete(ModelRequest(messages=[ASK], tools=[RESEARCH], tool_choice="none"))
    assert scripted.sent[0]["repeat_penalty"] > 1


def test_the_grammar_admits_calls_or_an_answer_as_tool_choice_says() -> None:
    both = _gbnf(json.dumps(tool_schema(ModelRequest(messages=[ASK], tools=[RESEARCH]))))
    assert '"\\"research\\""' in both and '"\\"answer\\""' in both
    calls_only = tool_schema(ModelRequest(messages=[ASK], tools=[RESEARCH], tool_choice="required"))
    assert calls_only["required"] == ["tool_calls"]
    answer_only = tool_schema(ModelRequest(messages=[ASK], tools=[RESEARCH], tool_choice="none"))
    assert answer_only["required"] == ["answer"]


async def test_parallel_calls_are_read_with_ids_unique_per_turn(scripted: ScriptedLlama) -> None:
    calls = [
        {"tool": "research", "arguments": {"company": "Acme"}},
        {"tool": "research", "arguments": {"company": "Globex"}},
    ]
    repeated = [*calls, calls[1]]  # a tiny model repeats itself: made once
    scripted.answers += [json.dumps({"tool_calls": repeated}), '{"answer": "Acme is bigger."}']
    model: LocalModel = scripted.model  # type: ignore[attr-defined]

    first = await model.complete(ModelRequest(system="Be brief.", messages=[ASK], tools=[RESEARCH]))
    assert first.stop_reason == "tool_use" and first.text == ""
    assert first.tool_calls == [
        ToolCall(id="call_1_1", name="research", arguments={"company": "Acme"}),
        ToolCall(id="call_1_2", name="research", arguments={"company": "Globex"}),
    ]
    results = Message(
        role="user",
        tool_results=[
            ToolResult(call_id="call_1_1", content="Acme: 500 staff"),
            ToolResult(call_id="call_1_2", content="timed out", is_error=True),
        ],
    )
    conversation = [ASK, first.as_message(), results]
    second = await model.complete(ModelRequest(messages=conversation, tools=[RESEARCH]))
    assert (second.text, second.tool_calls, second.stop_reason) == ("Acme is bigger.", [], "end")

    system, *turns = scripted.sent[1]["messages"]
    assert system["content"].startswith("You can call tools.") and "research" in system["content"]
    assert "Be brief." in scripted.sent[0]["messages"][0]["content"]
    # Its own calls read back as the JSON it wrote; the results by tool, in order.
    assert json.loads(turns[1]["content"]) == {"tool_calls": calls}
    assert turns[2]["role"] == "user"
    assert json.loads(turns[2]["content"].split("\n", 1)[1]) == [
        {"tool": "research", "result": "Acme: 500 staff"},
        {"tool": "research", "error": "timed out"},
    ]
    assert scripted.sent[1]["grammar"] is not None
    assert "repeat_penalty" not in scripted.sent[1]  # calls repeat their keys


async def test_a_structured_answer_is_its_json(scripted: ScriptedLlama) -> None:
    scripted.answers.append('{"answer": {"winner": "Acme"}}')
    model: LocalModel = scripted.model  # type: ignore[attr-defined]
    request = ModelRequest(messages=[ASK], tools=[RESEARCH], output_schema={"type": "object"})
    assert json.loads((await model.complete(request)).text) == {"winner": "Acme"}


async def test_an_answer_cut_off_is_a_retryable_error_with_its_tokens(
    scripted: ScriptedLlama,
) -> None:
    scripted.answers.append('{"tool_calls": [{"tool": "resea')
    model: LocalModel = scripted.model  # type: ignore[attr-defined]
    with pytest.raises(OutputValidationError, match="incomplete") as caught:
        await model.complete(ModelRequest(messages=[ASK], tools=[RESEARCH]))
    assert caught.value.answered is not None
    assert caught.value.answered.usage.output_tokens == 9


@pytest.mark.local_model
async def test_the_tiny_model_calls_tools_and_then_answers() -> None:
    model = LocalModel()
    request = ModelRequest(
        messages=[ASK], tools=[RESEARCH], tool_choice="required", max_tokens=300, temperature=0
    )
    first = await model.complete(request)
    assert first.tool_calls and all(call.name == "research" for call in first.tool_calls)
    assert all(isinstance(call.arguments["company"], str) for call in first.tool_calls)
    results = [ToolResult(call_id=call.id, content="A big company.") for call in first.tool_calls]
    conversation = [ASK, first.as_message(), Message(role="user", tool_results=results)]
    final = await model.complete(
        request.model_copy(update={"messages": conversation, "tool_choice": "none"})
    )
    assert final.tool_calls == [] and final.text.strip()
