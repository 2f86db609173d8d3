"""Tool calling for a local model that has no tool-calling format of its own.

The tools are described in the system prompt, and a grammar makes the model's whole answer
one JSON document: either ``{"tool_calls": [{"tool": <name>, "arguments": {...}}, ...]}``
(one or more calls, each shaped by its tool's parameter schema, run in parallel by the
caller) or ``{"answer": ...}`` (the final answer: text, or the request's output schema).
``tool_choice`` narrows the grammar to one branch. Earlier tool turns are shown to the
model as that same JSON, and their results as a user turn listing each call's outcome, so
a small model sees the format it must write at every step.
"""

from __future__ import annotations

import json
from typing import Any

from foreman.errors import OutputValidationError
from foreman.models.base import Message, ModelRequest, ToolCall

#: The most calls one answer may make: enough for a fan-out, small enough for the grammar.
MAX_CALLS_PER_TURN = 8
#: The longest free-text answer the grammar admits (the output cap is 512 tokens).
ANSWER_MAX_CHARS = 1500

_TOOLS_PROMPT = """\
You can call tools. Answer with one JSON object only, either
{{"tool_calls": [{{"tool": "<tool name>", "arguments": {{...}}}}]}} to call one or more \
tools (several calls run at the same time; their results come back in the next message), \
or {{"answer": ...}} to give your final answer once you have what you need.
Tools:
{tools}"""


def tool_system(request: ModelRequest) -> str:
    """The request's system prompt, followed by the tools and how to call them."""
    tools = "\n".join(
        f"- {tool.name}: {tool.description} Arguments (JSON schema): {json.dumps(tool.parameters)}"
        for tool in request.tools
    )
    prompt = _TOOLS_PROMPT.format(tools=tools)
    return f"{request.system}\n\n{prompt}" if request.system else prompt


def tool_schema(request: ModelRequest) -> dict[str, Any]:
    """The JSON schema (made a grammar by the caller) of an answer to ``request``."""
    calls = {
        "type": "object",
        "properties": {
            "tool_calls": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_CALLS_PER_TURN,
                "items": {
                    "anyOf": [
                        {
                            "type": "object",
                            "properties": {
                                "tool": {"const": tool.name},
                                "arguments": tool.parameters,
                            },
                            "required": ["tool", "arguments"],
                        }
                        for tool in request.tools
                    ]
                },
            }
        },
        "required": ["tool_calls"],
    }
    answer_schema = request.output_schema or {"type": "string", "maxLength": ANSWER_MAX_CHARS}
    answer = {
        "type": "object",
        "properties": {"answer": answer_schema},
        "required": ["answer"],
    }
    if request.tool_choice == "none":
        return answer
    if request.tool_choice == "required":
        return calls
    return {"anyOf": [calls, answer]}


def chat_messages(messages: list[Message]) -> list[dict[str, str]]:
    """The conversation as plain chat turns; tool turns written as the grammar's JSON."""
    names: dict[str, str] = {}
    turns = []
    for message in messages:
        if message.tool_calls:
            names.update((call.id, call.name) for call in message.tool_calls)
            calls = [{"tool": c.name, "arguments": c.arguments} for c in message.tool_calls]
            turns.append({"role": "assistant", "content": json.dumps({"tool_calls": calls})})
        elif message.tool_results:
            results = [
                {
                    "tool": names.get(result.call_id, result.call_id),
                    "error" if result.is_error else "result": result.content,
                }
                for result in message.tool_results
            ]
            text = "Tool results, in the order of the calls:\n" + json.dumps(results)
            if message.content:
                text += "\n\n" + message.content
            turns.append({"role": "user", "content": text})
        else:
            turns.append({"role": message.role, "content": message.content})
    return turns


def read_answer(text: str, request: ModelRequest, model: str) -> tuple[str, list[ToolCall]]:
    """The answer's text (a JSON document under an output schema) or its tool calls.

    Call ids are ``call_<turn>_<n>``, ``turn`` counting the assistant's turns so far, so
    they are unique within a conversation and the same each time it is replayed.
    """
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:  # cut off at the output cap
        raise OutputValidationError(
            f"{model} wrote an incomplete tool-calling answer ({exc.msg}); retrying usually helps."
        ) from exc
    if "tool_calls" in document:
        turn = 1 + sum(message.role == "assistant" for message in request.messages)
        # A small model tends to repeat a call until the grammar's limit: the same call
        # twice in one turn would only give the same result twice, so it is made once.
        unique = {json.dumps(call, sort_keys=True): call for call in document["tool_calls"]}
        calls = [
            ToolCall(id=f"call_{turn}_{n}", name=call["tool"], arguments=call["arguments"])
            for n, call in enumerate(unique.values(), start=1)
        ]
        return "", calls
    answer = document["answer"]
    return (answer if request.output_schema is None else json.dumps(answer)), []
