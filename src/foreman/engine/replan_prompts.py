"""What the replanning model reads, and how a worker asks for a replan.

A worker signals that the plan should change in its answer: a text answer with a line
``REPLAN: <why>``, a structured answer with a ``replan`` field (a string; null or absent
means no). ``replan_hint`` extracts it into ``TaskResult.replan``; the output itself is
left as it is, so the tasks that depend on it read exactly what the worker wrote.

The revision prompt shows the request, the plan with each task's state, and the settled
results. With a context budget (``engine.context``), the results go through compaction:
the older ones reach the reviser as summaries, the ones that just settled whole
(``full_entries``). Without one they are cut to a fixed size (``bounded_entries``:
``RESULT_CHARS`` each, ``RESULTS_CHARS`` in all, the ones that just settled first). Either
way a long run cannot overflow the model's window, and the full outputs stay in the store
and reach the tasks that depend on them unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from foreman.plan.prompts import ARGS_RULE, FOR_EACH_RULE, output_lists
from foreman.plan.schema import Plan
from foreman.results import TaskResult
from foreman.workers.registry import Registry

#: Characters of one result the revision model reads, and of all results together.
RESULT_CHARS = 1500
RESULTS_CHARS = 12000

_HINT_LINE = re.compile(r"^\s*REPLAN\s*:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)

#: Appended to a text worker's system prompt when the run replans.
HINT_SUFFIX = (
    "\n\nIf what you found means the rest of the plan should change (more work, other "
    "work, work that can be split), end your answer with one line: REPLAN: <why>."
)

REPLAN_SYSTEM = """\
You are the orchestrator of a team of specialist workers, revising a plan while it runs. \
Some tasks have finished; read their results and decide whether the rest of the plan \
should change.

Workers:
{workers}
{rules}
You may:
- "add" new tasks (new ids, e.g. continue the numbering; a task may depend on any task \
in the plan, finished ones included, and on other added tasks);
- "change" pending tasks (same id; new instructions, worker or depends_on);
- "drop" pending tasks that are no longer needed (no remaining task may depend on them).
Finished and running tasks cannot be changed or dropped. Never add a task that repeats \
one already done or failed. Tasks that do not need each other run in parallel: only add a \
dependency when its output is really needed. The plan may have at most {max_tasks} tasks.
A worker sees only its instructions and the outputs of its dependencies, never the request.

If the plan is fine as it is, answer with empty lists. Answer with JSON only:
{{"reason": "why the plan changes (or not)", "add": [{{"id": "t9", "worker": "...", \
"instructions": "...", "depends_on": ["t2"]}}], "change": [], "drop": []}}"""

REPLAN_RETRY = """\
That revision cannot be applied. Problems:
{errors}
Write the whole revision again, corrected, as JSON only."""


def replan_hint(output: Any) -> str | None:
    """Why a worker's answer asks for a replan, or None when it does not."""
    if isinstance(output, str):
        found = _HINT_LINE.findall(output)
        return found[-1] if found else None
    if isinstance(output, Mapping):
        hint = output.get("replan")
        if isinstance(hint, str) and hint.strip():
            return hint.strip()
        if hint is True:
            return "the worker asked for a replan"
    return None


def replan_system_prompt(registry: Registry, max_tasks: int) -> str:
    """The reviser's instructions: the workers (with the args and lists they take and
    give, and the planner's rules for those), what a revision may do, its format."""
    lines = []
    for worker in registry:
        line = f"- {worker.name}: {worker.description}"
        if worker.input_schema is not None:
            line += f" (args: {json.dumps(worker.input_schema.model_json_schema())})"
        if lists := output_lists(worker):
            line += f" (lists: {', '.join(lists)})"
        lines.append(line)
    rules = ARGS_RULE if any(worker.input_schema is not None for worker in registry) else ""
    rules += FOR_EACH_RULE if any(map(output_lists, registry)) else ""
    return REPLAN_SYSTEM.format(workers="\n".join(lines), rules=rules, max_tasks=max_tasks)


#: What the reviser reads results for: what compaction's summaries must keep.
REPLAN_GOAL = (
    "deciding whether the rest of the plan must change: what each task found, what it could "
    "not do and why, and every request to replan"
)


def bounded_entries(results: Mapping[str, TaskResult], fresh: Iterable[str]) -> list[dict]:
    """The results, those in ``fresh`` first, each cut to ``RESULT_CHARS`` and all together
    to about ``RESULTS_CHARS`` (the rest are listed, their outputs cut to nothing)."""
    fresh = list(dict.fromkeys(fresh))
    order = fresh + [task_id for task_id in results if task_id not in fresh]
    shown, left = [], RESULTS_CHARS
    for task_id in order:
        result = results.get(task_id)
        if result is None or result.status.value == "waiting":
            continue
        entry = _result_entry(result, min(RESULT_CHARS, max(left, 0)))
        left -= len(entry.get("output") or "")
        shown.append(entry)
    return shown


def full_entries(results: Mapping[str, TaskResult], fresh: Iterable[str]) -> list[dict]:
    """The results whole, oldest first and those in ``fresh`` last: compaction keeps the
    newest entries whole and summarises the older ones."""
    fresh = list(dict.fromkeys(fresh))
    order = [task_id for task_id in results if task_id not in fresh] + fresh
    return [
        _result_entry(result, None)
        for task_id in order
        if (result := results.get(task_id)) is not None and result.status.value != "waiting"
    ]


def revision_request(
    request: str,
    plan: Plan,
    states: Mapping[str, str],
    results: Mapping[str, TaskResult],
    entries: list[dict],
    fresh: Iterable[str],
) -> str:
    """The user message of a revision: the request, the plan and its states, the result
    ``entries`` (``bounded_entries``, or ``full_entries`` compacted) and which tasks
    (``fresh``) settled since the last revision."""
    fresh = list(dict.fromkeys(fresh))
    tasks = [
        {
            **task.model_dump(exclude_none=True),
            "state": _state(task.id, states, results),
        }
        for task in plan.tasks
    ]
    return json.dumps(
        {
            "request": request,
            "just_finished": fresh,
            "plan": tasks,
            "results": entries,
        },
        ensure_ascii=False,
        indent=1,
    )


def replan_retry_prompt(errors: list[str]) -> str:
    return REPLAN_RETRY.format(errors="\n".join(f"- {e}" for e in errors))


def _state(task_id: str, states: Mapping[str, str], results: Mapping[str, TaskResult]) -> str:
    """``succeeded``, ``failed``, ``skipped``, ``waiting``; ``running``, ``pending``, ``held``."""
    result = results.get(task_id)
    return result.status.value if result is not None else states.get(task_id, "pending")


def _result_entry(result: TaskResult, room: int | None) -> dict[str, Any]:
    """A result as the reviser reads it; its output cut to ``room`` characters, if given."""
    output = result.output
    text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
    if text is not None and room is not None and len(text) > room:
        text = text[:room] + f" [... {len(text) - room} more characters]"
    entry: dict[str, Any] = {"id": result.task_id, "status": result.status.value}
    if result.succeeded:
        entry["output"] = text
    else:
        entry["error"] = (result.error or "")[:RESULT_CHARS]
    if result.replan:
        entry["replan"] = result.replan
    return entry
