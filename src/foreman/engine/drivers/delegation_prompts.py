"""What the delegating orchestrator is told: its role, each worker as a tool, and how a
delegation's result reads when it comes back."""

from __future__ import annotations

import json
from typing import Any

from foreman.workers.spec import Worker

DELEGATE_SYSTEM = """\
You are the orchestrator of a team of specialist workers. You answer the user's request by \
delegating work to them: each worker is a tool, and calling it hands that worker a task \
with your instructions. Workers know nothing but what you send them, so make each \
instruction self-contained. Delegations you make in the same turn run in parallel, so \
make independent ones together (for example, one per item to research). Each result comes \
back with its id; to give a worker earlier results to build on, list their ids in its \
`inputs`. Look at what the workers report before deciding what to do next: delegate \
follow-up work where a result is missing, failed or raises a new question. When you have \
what you need, answer the user's request yourself, in full, without calling any tool \
(do not mention workers or ids). You have at most {max_turns} turns and \
{max_delegations} delegations in all."""

LAST_TURN = (
    "This is your last turn: answer the request now from the results you have, and say "
    "plainly which parts are incomplete or uncertain."
)

#: What the summaries of older results must keep, when a context budget compacts them.
COMPACTION_GOAL = (
    "The orchestrator reads these results of its earlier delegations to decide what to "
    "delegate next and to write the final answer: keep every finding, figure and name, "
    "what failed and why, and which delegation id each comes from."
)

#: What a delegation's instructions may hold; a longer brief belongs in an input.
INSTRUCTIONS_MAX_CHARS = 2000


#: Told instead of "each worker is a tool" when a router picks the workers.
ROUTED = (
    "Here you delegate with the one `delegate` tool: each task goes to the worker best "
    "suited to it, chosen for you from the task's wording, so say plainly what is to be "
    "done (research, analysis, writing, code...)."
)


def delegate_system(
    max_turns: int, max_delegations: int, *, last: bool, routed: bool = False
) -> str:
    prompt = DELEGATE_SYSTEM.format(max_turns=max_turns, max_delegations=max_delegations)
    if routed:
        prompt = f"{prompt}\n\n{ROUTED}"
    return f"{prompt}\n\n{LAST_TURN}" if last else prompt


def tool_description(worker: Worker) -> str:
    return (
        f"Delegate a task to the {worker.name!r} worker: {worker.description} "
        "Returns the worker's result and its id."
    )


def tool_parameters(worker: Worker) -> dict[str, Any]:
    """A delegation's arguments: the instructions, earlier results to pass on, and the
    worker's own structured arguments when it declares an input schema."""
    properties: dict[str, Any] = {
        "instructions": {
            "type": "string",
            "maxLength": INSTRUCTIONS_MAX_CHARS,
            "description": "What the worker must do, self-contained.",
        },
        "inputs": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Ids of earlier delegations whose results the worker needs.",
        },
    }
    required = ["instructions"]
    if worker.input_schema is not None:
        properties["args"] = worker.input_schema.model_json_schema()
        required.append("args")
    return {"type": "object", "properties": properties, "required": required}


def result_text(task_id: str, status: str, body: Any, *, error: bool) -> str:
    """A delegation's outcome as the orchestrator reads it: the id to cite, and the
    worker's output (or why there is none)."""
    key = "error" if error else "output"
    return json.dumps({"id": task_id, "status": status, key: body}, ensure_ascii=False, default=str)
