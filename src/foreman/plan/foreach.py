"""For-each tasks, as data: where a task's items come from, and what its item tasks are.

A task with ``for_each: "t1.files"`` runs once per element of the list at ``files`` in the
structured output of ``t1`` (one of its own dependencies). The reference is the dependency's
id, then an optional dotted path into its output; ``for_each: "t1"`` iterates over t1's
output itself (a list, e.g. another for-each task's). Item tasks are ``<id>.1``, ``<id>.2``,
... in list order: ids that are stable (a pure function of the stored dependency output,
so a resumed run finds the items it already ran) and safe to type in a shell.

Everything here is pure, so the planner's validation, the engine and the CLI agree on it.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from foreman.errors import ForemanError
from foreman.plan.schema import Plan, Task

#: The input name under which an item task receives its item.
ITEM_INPUT = "item"


def split_ref(ref: str, depends_on: list[str]) -> tuple[str, list[str]] | None:
    """``(dependency id, path)`` for a ``for_each`` reference, or None if it names none of
    ``depends_on``. The longest matching id wins, so ids with dots still work."""
    matches = [dep for dep in depends_on if ref == dep or ref.startswith(dep + ".")]
    if not matches:
        return None
    dep = max(matches, key=len)
    rest = ref[len(dep) + 1 :]
    return dep, rest.split(".") if rest else []


def items_at(output: Any, path: list[str], ref: str) -> list[Any]:
    """The list at ``path`` in ``output``; ``ValueError`` with one clear line if there is
    none (a missing key, or something that is not a list)."""
    value = output
    walked: list[str] = []
    for key in path:
        if isinstance(value, dict):
            if key not in value:
                keys = ", ".join(map(str, value)) or "none"
                where = ".".join(walked) or "the output"
                raise ValueError(f"for_each {ref!r}: {where} has no {key!r} (its keys: {keys})")
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            where = ".".join(walked) or "the output"
            raise ValueError(f"for_each {ref!r}: {where} is {_kind(value)}, so it has no {key!r}")
        walked.append(key)
    if not isinstance(value, list):
        raise ValueError(f"for_each {ref!r}: expected a list, got {_kind(value)}")
    return value


def item_id(task_id: str, index: int) -> str:
    """The id of item ``index`` (0-based) of for-each task ``task_id``: 1-based, like t1."""
    return f"{task_id}.{index + 1}"


def item_task(task: Task, index: int) -> Task:
    """Item ``index`` of ``task``: its worker, instructions, args, dependencies, and the
    judge that reviews it (each item is judged as the task would be)."""
    return Task(
        id=item_id(task.id, index),
        worker=task.worker,
        instructions=task.instructions,
        depends_on=list(task.depends_on),
        args=task.args,
        judge=task.judge,
        max_rounds=task.max_rounds,
    )


def parent_of(plan: Plan, task_id: str) -> tuple[Task, int] | None:
    """The for-each task an item id belongs to and the item's 0-based index, or None."""
    head, dot, tail = task_id.rpartition(".")
    if not dot or not tail.isdigit() or tail.startswith("0"):
        return None
    try:
        parent = plan.task(head)
    except KeyError:
        return None
    return (parent, int(tail) - 1) if parent.for_each else None


def made_task(plan: Plan | None, task_id: str, stored: Container[str]) -> Task | None:
    """The run's task ``task_id``: one of its plan, or an item of one that was made (its
    result is among the ``stored`` ids); None for any other id."""
    if plan is None:
        return None
    try:
        return plan.task(task_id)
    except KeyError:
        found = parent_of(plan, task_id)
    return item_task(*found) if found and task_id in stored else None


def no_task(run_id: str, task_id: str, plan: Plan | None) -> ForemanError:
    """The error for a task id the run does not have, naming those it has."""
    ids = [task.id for task in plan.tasks] if plan else []
    known = f"its tasks: {', '.join(ids)}" if ids else "it has no plan yet"
    return ForemanError(f"Run {run_id} has no task {task_id!r}; {known}.")


def find_task(plan: Plan, task_id: str) -> Task | None:
    """The plan's task ``task_id``, or the item task it names, or None."""
    try:
        return plan.task(task_id)
    except KeyError:
        pass
    found = parent_of(plan, task_id)
    return item_task(*found) if found else None


def item_ids_of(task_id: str, ids: Any) -> list[str]:
    """The item ids of ``task_id`` among ``ids``, in item order."""
    prefix = task_id + "."
    numbers = [
        int(other[len(prefix) :])
        for other in ids
        if other.startswith(prefix) and other[len(prefix) :].isdigit()
    ]
    return [f"{prefix}{number}" for number in sorted(numbers) if number > 0]


def list_fields(schema: dict[str, Any], *, depth: int = 2) -> list[str]:
    """Dotted paths of the list fields of a JSON schema (a worker's output schema), so the
    planner can be told what it may run a task for each of."""
    defs = schema.get("$defs", {})

    def walk(node: dict[str, Any], prefix: str, left: int) -> list[str]:
        node = _resolve(node, defs)
        found: list[str] = []
        for name, sub in node.get("properties", {}).items():
            sub = _resolve(sub, defs)
            path = f"{prefix}{name}"
            if sub.get("type") == "array":
                found.append(path)
            elif sub.get("type") == "object" or "properties" in sub:
                if left > 1:
                    found.extend(walk(sub, path + ".", left - 1))
        return found

    return walk(schema, "", depth)


def check_path(schema: dict[str, Any], path: list[str]) -> str | None:
    """Why ``path`` cannot name a list in outputs of ``schema``, or None when it may.

    Only what the schema rules out is reported: a schema too loose to tell (``anyOf``,
    free-form objects) passes, and the run checks the actual output."""
    defs = schema.get("$defs", {})
    node = _resolve(schema, defs)
    walked: list[str] = []
    for key in path:
        properties = node.get("properties")
        if properties is None:
            return None
        if key not in properties:
            where = ".".join(walked) or "the output"
            return f"{where} has no field {key!r} (fields: {', '.join(properties) or 'none'})"
        node = _resolve(properties[key], defs)
        walked.append(key)
    kind = node.get("type")
    if kind is not None and kind != "array":
        return f"{'.'.join(walked) or 'the output'} is {kind}, not a list"
    return None


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return defs.get(ref.removeprefix("#/$defs/"), {})
    return node


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict):
        return "an object"
    if value is None:
        return "null"
    return type(value).__name__
