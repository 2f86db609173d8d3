"""Plan validation: every error at once, worded so a model (or a person) can fix it.

The planner feeds these messages back to the model verbatim, so each one names the task
and says exactly what is wrong.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError

from foreman.plan.foreach import ITEM_INPUT, check_path, split_ref
from foreman.plan.schema import Plan, Task
from foreman.workers.registry import Registry


def parse_plan(text: str) -> tuple[Plan | None, list[str]]:
    """Turn a model's answer into a ``Plan``, tolerating code fences and chatter around JSON."""
    data = extract_json(text)
    if data is None:
        return None, ["The answer contains no JSON object; reply with the plan as JSON only."]
    if isinstance(data, list):
        data = {"tasks": data}
    try:
        return Plan.model_validate(data), []
    except ValidationError as exc:
        return None, [
            f"{'.'.join(str(p) for p in err['loc']) or 'plan'}: {err['msg']}"
            for err in exc.errors()
        ]


def validate_plan(plan: Plan, registry: Registry, *, max_tasks: int) -> list[str]:
    """All the reasons ``plan`` cannot run; an empty list means it can."""
    if not plan.tasks:
        return ["The plan is empty; it needs at least one task."]
    errors: list[str] = []
    if len(plan.tasks) > max_tasks:
        errors.append(f"The plan has {len(plan.tasks)} tasks; the limit is {max_tasks}.")
    ids = [task.id for task in plan.tasks]
    seen: set[str] = set()
    for task_id in ids:
        if task_id in seen:
            errors.append(f"Task id {task_id!r} is used more than once; ids must be unique.")
        if "#" in task_id:  # TASK#N names a task's tool calls (their approvals, journal)
            errors.append(f"Task id {task_id!r} has a '#', which task ids may not have.")
        seen.add(task_id)
    for task in plan.tasks:
        if task.worker not in registry:
            errors.append(
                f"Task {task.id!r} uses unknown worker {task.worker!r}; "
                f"choose one of: {', '.join(registry.names())}."
            )
        else:
            errors.extend(_check_args(task.id, task.args, registry.get(task.worker)))
        if task.judge is not None and task.judge not in registry:
            errors.append(
                f"Task {task.id!r} is judged by unknown worker {task.judge!r}; "
                f"choose one of: {', '.join(registry.names())}."
            )
        if placeholder := _PLACEHOLDER.search(task.instructions):
            errors.append(
                f"Task {task.id!r} still has the placeholder {placeholder.group()!r} in its "
                "instructions; write the actual instructions for this request."
            )
        for dep in task.depends_on:
            if dep == task.id:
                errors.append(f"Task {task.id!r} depends on itself.")
            elif dep not in seen:
                errors.append(f"Task {task.id!r} depends on {dep!r}, which is not in the plan.")
    if plan.answer_task is not None and plan.answer_task not in seen:
        errors.append(f"The answer task {plan.answer_task!r} is not in the plan.")
    errors.extend(_check_for_each(plan, registry))
    if not errors:
        cycle = find_cycle(plan)
        if cycle:
            errors.append(f"The dependencies form a cycle: {' -> '.join(cycle)}.")
    return errors


def find_cycle(plan: Plan) -> list[str] | None:
    """One dependency cycle as a list of ids (first id repeated at the end), or None."""
    depends = {task.id: task.depends_on for task in plan.tasks}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    for root in depends:
        if state.get(root):
            continue
        path: list[str] = []
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            node, index = stack.pop()
            if index == 0:
                state[node] = 1
                path.append(node)
            deps = depends.get(node, [])
            if index < len(deps):
                stack.append((node, index + 1))
                nxt = deps[index]
                if state.get(nxt) == 1:
                    return [*path[path.index(nxt) :], nxt]
                if not state.get(nxt) and nxt in depends:
                    stack.append((nxt, 0))
            else:
                state[node] = 2
                path.pop()
    return None


def _check_for_each(plan: Plan, registry: Registry) -> list[str]:
    """A ``for_each`` names one of the task's own dependencies, whose output can hold a list;
    no other task takes an id reserved for its items (``<id>.1``...)."""
    errors: list[str] = []
    by_id = {task.id: task for task in plan.tasks}
    for task in plan.tasks:
        if task.for_each is None:
            continue
        reserved = [other.id for other in plan.tasks if other.id.startswith(task.id + ".")]
        if reserved:
            errors.append(
                f"Task {task.id!r} runs for each item, so ids {task.id + '.1'!r}, "
                f"{task.id + '.2'!r}... are its items'; rename {', '.join(map(repr, reserved))}."
            )
        if ITEM_INPUT in task.depends_on:
            errors.append(
                f"Task {task.id!r} runs for each item and gets its item as input "
                f"{ITEM_INPUT!r}; rename its dependency {ITEM_INPUT!r}."
            )
        ref = split_ref(task.for_each, task.depends_on)
        if ref is None:
            errors.append(
                f"Task {task.id!r} has for_each {task.for_each!r}, which names none of its "
                f"dependencies ({', '.join(task.depends_on) or 'it has none'}); write a "
                "dependency's id, then the path to the list: 't1.files'."
            )
            continue
        source = by_id.get(ref[0])
        if source is not None and (problem := _source_problem(source, ref[1], registry)):
            errors.append(f"Task {task.id!r} has for_each {task.for_each!r}, but {problem}.")
    return errors


def _source_problem(source: Task, path: list[str], registry: Registry) -> str | None:
    """Why ``source``'s output can have no list at ``path``, as far as its worker tells."""
    if source.for_each is not None:  # its output is the list of its items' outputs
        return "a for-each task's output is its list itself: name it alone" if path else None
    if source.worker not in registry:
        return None  # reported as an unknown worker
    schema = registry.get(source.worker).output_schema
    if schema is None:
        return (
            f"{source.id}'s worker {source.worker!r} answers in text; for_each needs a "
            "dependency whose worker has an output schema with a list"
        )
    problem = check_path(schema.model_json_schema(), path)
    return f"in {source.id}'s output, {problem}" if problem else None


def _check_args(task_id: str, args: dict[str, Any] | None, worker: Any) -> list[str]:
    if worker.input_schema is None:
        return []
    try:
        worker.input_schema.model_validate(args or {})
    except ValidationError as exc:
        return [
            f"Task {task_id!r}: args.{'.'.join(str(p) for p in err['loc'])}: {err['msg']} "
            f"(worker {worker.name!r} needs args matching "
            f"{json.dumps(worker.input_schema.model_json_schema())})"
            for err in exc.errors()
        ]
    return []


_PLACEHOLDER = re.compile(r"<[a-z]+(?: [a-z]+){2,}>")
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def extract_json(text: str) -> Any:
    candidates = [text.strip(), *(m.strip() for m in _FENCE.findall(text))]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            continue
    return None
