"""The delegating orchestrator's conversation: workers as tools, tool calls as tasks.

Each delegation becomes a task of the run, with an id that says which turn made it
(``d<turn>-<n>``: the second delegation of turn 3 is ``d3-2``). The conversation is never
stored as such: it is rebuilt from the run's tasks and their results, every turn, so a
resumed run shows the orchestrator exactly the delegations and results it had, and no
delegation is made twice. What a stored run cannot give back is what the live one keeps
in ``TurnNotes``: the text the model wrote beside its calls, and the calls that were
refused (an unknown input id, say) with why; a resumed run goes on without them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from foreman.engine.drivers.delegation_prompts import result_text, tool_description, tool_parameters
from foreman.models.base import Message, ToolCall, ToolResult, ToolSpec
from foreman.plan.schema import Plan, Task
from foreman.results import TaskResult
from foreman.workers.registry import Registry

_ID = re.compile(r"^d(\d+)-(\d+)$")


def delegation_id(turn: int, n: int) -> str:
    return f"d{turn}-{n}"


def turn_of(task_id: str) -> int:
    """The turn that made a delegation (0 for an id this driver did not give)."""
    match = _ID.match(task_id)
    return int(match.group(1)) if match else 0


def worker_tools(registry: Registry) -> list[ToolSpec]:
    """One tool per worker, named after it (worker names are valid tool names)."""
    return [
        ToolSpec(name=w.name, description=tool_description(w), parameters=tool_parameters(w))
        for w in registry
    ]


@dataclass
class Refused:
    """A tool call that did not become a delegation, and what the model is told."""

    call: ToolCall
    reason: str


@dataclass
class TurnNotes:
    """What one turn of the live conversation holds beyond the run's tasks."""

    text: str = ""
    refused: list[Refused] = field(default_factory=list)


def delegations(
    calls: list[ToolCall], turn: int, plan: Plan, registry: Registry, room: int
) -> tuple[list[Task], list[Refused]]:
    """The tasks ``calls`` ask for (at most ``room`` of them), and the calls refused.

    Each call is numbered in its turn, refused or not, and keeps that id in the
    conversation, so the model's calls and the results it gets back always pair up.
    """
    earlier = {task.id for task in plan.tasks}
    tasks: list[Task] = []
    refused: list[Refused] = []
    for n, call in enumerate(calls, start=1):
        call = call.model_copy(update={"id": delegation_id(turn, n)})
        if len(tasks) >= room:
            reason = "The run's limit of delegations is reached; answer with what you have."
            refused.append(Refused(call, reason))
            continue
        task_or_reason = _task(call, earlier, registry)
        if isinstance(task_or_reason, Task):
            tasks.append(task_or_reason)
        else:
            refused.append(Refused(call, task_or_reason))
    return tasks, refused


def _task(call: ToolCall, earlier: set[str], registry: Registry) -> Task | str:
    """The task a call asks for, or why it cannot run (worded for the model to fix)."""
    if call.name not in registry:
        return f"There is no worker {call.name!r}; use one of: {', '.join(registry.names())}."
    worker = registry.get(call.name)
    arguments = call.arguments
    instructions = arguments.get("instructions")
    if not isinstance(instructions, str) or not instructions.strip():
        return "`instructions` must be a non-empty string saying what the worker must do."
    inputs = arguments.get("inputs") or []
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        return "`inputs` must be a list of ids of earlier delegations."
    unknown = [i for i in inputs if i not in earlier]
    if unknown:
        known = ", ".join(sorted(earlier)) or "none yet"
        return (
            f"`inputs` names {', '.join(map(repr, unknown))}, which are not results of "
            f"earlier delegations (those are: {known})."
        )
    args = arguments.get("args") if worker.input_schema is not None else None
    if worker.input_schema is not None:
        try:
            worker.input_schema.model_validate(args or {})
        except ValidationError as exc:
            return f"`args` does not fit the worker's input schema: {str(exc)[:300]}"
    return Task(
        id=call.id,
        worker=worker.name,
        instructions=instructions.strip(),
        depends_on=list(dict.fromkeys(inputs)),
        args=args,
    )


def conversation(
    request: str,
    plan: Plan,
    results: dict[str, TaskResult],
    notes: dict[int, TurnNotes],
    shown: dict[str, str] | None = None,
    *,
    tool_name: str | None = None,
) -> list[Message]:
    """The orchestrator's conversation so far: the request, then for each turn its calls
    and their results (refused calls with why), from the run's tasks and ``notes``.
    ``shown`` replaces what some results read as (compacted ones, see ``shown_results``);
    ``tool_name`` is the one tool every call was made with (a routed run's ``delegate``)."""
    by_turn: dict[int, list[Task]] = {}
    for task in plan.tasks:
        by_turn.setdefault(turn_of(task.id), []).append(task)
    messages = [Message(role="user", content=request)]
    for turn in sorted(by_turn.keys() | notes.keys()):
        note = notes.get(turn, TurnNotes())
        pairs = [
            (
                ToolCall(id=t.id, name=tool_name or t.worker, arguments=_arguments(t)),
                _result(t, results, shown),
            )
            for t in by_turn.get(turn, [])
        ]
        pairs += [
            (
                r.call.model_copy(update={"name": tool_name or r.call.name}),
                ToolResult(call_id=r.call.id, content=r.reason, is_error=True),
            )
            for r in note.refused
        ]
        pairs.sort(key=lambda pair: _n(pair[0].id))  # in the order the model made them
        calls = [call for call, _ in pairs]
        messages.append(Message(role="assistant", content=note.text, tool_calls=calls))
        messages.append(Message(role="user", tool_results=[answer for _, answer in pairs]))
    return messages


def _n(call_id: str) -> int:
    match = _ID.match(call_id)
    return int(match.group(2)) if match else 0


def _arguments(task: Task) -> dict[str, Any]:
    arguments: dict[str, Any] = {"instructions": task.instructions, "inputs": task.depends_on}
    if task.args is not None:
        arguments["args"] = task.args
    return arguments


def result_entries(plan: Plan, results: dict[str, TaskResult]) -> list[dict[str, Any]]:
    """Every delegation's settled result as the orchestrator reads it, oldest first: what
    a context budget compacts (``engine.context``)."""
    entries = []
    for task in plan.tasks:
        result = results.get(task.id)
        if result is None:
            continue
        if result.succeeded:
            entries.append({"id": task.id, "status": "succeeded", "output": result.output})
        else:
            entries.append({"id": task.id, "status": result.status.value, "error": result.error})
    return entries


def shown_results(entries: list[dict[str, Any]]) -> dict[str, str]:
    """What each compacted result reads as in the conversation (every call still gets a
    result): a summary goes with the first id it covers, the others point to it."""
    shown: dict[str, str] = {}
    for entry in entries:
        if "summary_of" not in entry:
            continue
        first, *rest = entry["summary_of"]
        shown[first] = json.dumps(
            {"summary_of": entry["summary_of"], "summary": entry["summary"]}, ensure_ascii=False
        )
        for other in rest:
            shown[other] = f"Summarised with the other results in the result of {first}."
    return shown


def _result(task: Task, results: dict[str, TaskResult], shown: dict[str, str] | None) -> ToolResult:
    result = results.get(task.id)
    failed = result is None or not result.succeeded
    if shown and task.id in shown:
        return ToolResult(call_id=task.id, content=shown[task.id], is_error=failed)
    if result is not None and result.succeeded:
        content = result_text(task.id, "succeeded", result.output, error=False)
        return ToolResult(call_id=task.id, content=content)
    status, why = (result.status.value, result.error) if result else ("not run", None)
    content = result_text(task.id, status, why or status, error=True)
    return ToolResult(call_id=task.id, content=content, is_error=True)
