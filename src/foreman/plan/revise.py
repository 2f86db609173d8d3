"""Plan revisions: what the orchestrator may change in a plan while it runs, and the checks
a revision passes before it touches the run.

A revision adds tasks, changes pending ones (same id, new instructions, worker, inputs) or
drops pending ones. Settled and running tasks are history: a revision that names one is
refused, like a plan that does not validate, and the model is shown why. The revised plan
as a whole is then validated like any plan (``validate_plan``: ids, dependencies, cycles,
workers, size).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from foreman.plan.schema import INSTRUCTIONS_MAX_CHARS, Plan, Task
from foreman.plan.validate import extract_json, validate_plan
from foreman.workers.registry import Registry

#: A task's state as ``DagRun.state`` reports it: only ``pending`` tasks may be changed or
#: dropped; ``settled`` and ``running`` are history, ``held`` waits for an approval upstream.
TaskState = str


class Revision(BaseModel):
    """The orchestrator's answer after looking at results: changes, or none (keep going)."""

    reason: str = Field("", description="Why the plan changes (or why it does not).")
    add: list[Task] = Field(default_factory=list)
    change: list[Task] = Field(default_factory=list)
    drop: list[str] = Field(default_factory=list)

    @property
    def empty(self) -> bool:
        """No change asked for: the plan goes on as it is."""
        return not (self.add or self.change or self.drop)


class PlanChanges(BaseModel):
    """The ids a revision added, changed and dropped."""

    added: list[str] = Field(default_factory=list)
    changed: list[str] = Field(default_factory=list)
    dropped: list[str] = Field(default_factory=list)


def parse_revision(text: str) -> tuple[Revision | None, list[str]]:
    """A model's answer as a ``Revision``, tolerating code fences and chatter around JSON."""
    data = extract_json(text)
    if not isinstance(data, dict):
        return None, ["The answer contains no JSON object; reply with the revision as JSON only."]
    try:
        return Revision.model_validate(data), []
    except ValidationError as exc:
        return None, [
            f"{'.'.join(str(p) for p in err['loc']) or 'revision'}: {err['msg']}"
            for err in exc.errors()
        ]


def check_revision(
    plan: Plan,
    revision: Revision,
    states: Mapping[str, TaskState],
    registry: Registry,
    *,
    max_tasks: int,
) -> tuple[Plan | None, list[str]]:
    """The revised plan, or every reason ``revision`` cannot apply to ``plan`` now.

    ``states`` gives each task of ``plan`` its state at this moment (a task may have
    started while the model was thinking: changing it is refused then).
    """
    errors: list[str] = []
    known = {task.id for task in plan.tasks}
    for task in revision.change:
        errors += _untouchable(task.id, "changed", known, states)
    for task_id in revision.drop:
        errors += _untouchable(task_id, "dropped", known, states)
    for task in revision.add:
        if task.id in known:
            errors.append(
                f"Task id {task.id!r} is already in the plan; a new task needs a new id "
                "(to modify a pending task, put it under 'change')."
            )
    touched = [task.id for task in revision.change] + revision.drop
    if len(touched) != len(set(touched)):
        errors.append("A task is changed or dropped more than once; name each task once.")
    if errors:
        return None, errors
    revised = apply_revision(plan, revision)
    dropped = set(revision.drop)
    for task in revised.tasks:
        for dep in task.depends_on:
            if dep in dropped:
                errors.append(
                    f"Task {task.id!r} depends on {dep!r}, which the revision drops; drop or "
                    "change it too."
                )
    errors += validate_plan(revised, registry, max_tasks=max_tasks)
    return (None, errors) if errors else (revised, [])


def apply_revision(plan: Plan, revision: Revision) -> Plan:
    """``plan`` with the revision's changes in place, drops removed, additions at the end;
    its ``answer_task`` (a pattern's last stage) stays, unless the revision dropped it."""
    changed = {task.id: task for task in revision.change}
    dropped = set(revision.drop)
    tasks = [changed.get(task.id, task) for task in plan.tasks if task.id not in dropped]
    answer = plan.answer_task if plan.answer_task not in dropped else None
    return Plan(tasks=[*tasks, *revision.add], answer_task=answer)


def changes_of(revision: Revision) -> PlanChanges:
    return PlanChanges(
        added=[task.id for task in revision.add],
        changed=[task.id for task in revision.change],
        dropped=list(revision.drop),
    )


def revision_schema(
    worker_names: list[str], *, with_args: bool = False, with_for_each: bool = False
) -> dict[str, Any]:
    """The JSON schema a revision answer follows (structured output where supported);
    ``with_args`` and ``with_for_each`` admit a task's optional ``args`` and ``for_each``,
    as the planner's schema does for teams that use them."""
    task: dict[str, Any] = {
        "type": "object",
        "properties": {
            "id": {"type": "string", "minLength": 1, "maxLength": 40},
            "worker": {"type": "string", "enum": list(worker_names)},
            "instructions": {
                "type": "string",
                "minLength": 1,
                "maxLength": INSTRUCTIONS_MAX_CHARS,
            },
            "depends_on": {"type": "array", "items": {"type": "string"}, "maxItems": 6},
        },
        "required": ["id", "worker", "instructions", "depends_on"],
        "additionalProperties": False,
    }
    if with_args:
        task["properties"]["args"] = {"type": "object"}
    if with_for_each:
        task["properties"]["for_each"] = {"type": "string", "minLength": 2, "maxLength": 100}
    return {
        "type": "object",
        "properties": {
            "reason": {"type": "string", "maxLength": INSTRUCTIONS_MAX_CHARS},
            "add": {"type": "array", "items": task, "maxItems": 12},
            "change": {"type": "array", "items": task, "maxItems": 12},
            "drop": {"type": "array", "items": {"type": "string"}, "maxItems": 12},
        },
        "required": ["reason", "add", "change", "drop"],
        "additionalProperties": False,
    }


def _untouchable(
    task_id: str, what: str, known: set[str], states: Mapping[str, TaskState]
) -> list[str]:
    if task_id not in known:
        return [f"Task {task_id!r} cannot be {what}: it is not in the plan."]
    state = states.get(task_id, "pending")
    if state != "pending":
        why = "waits for an approval upstream" if state == "held" else f"is {state}"
        return [
            f"Task {task_id!r} cannot be {what}: it {why} (only pending tasks can change; "
            "add a new task instead)."
        ]
    return []
