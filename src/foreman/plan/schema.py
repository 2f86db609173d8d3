"""The plan: tasks, the worker each goes to, and what each depends on.

Two JSON schemas describe it to models. The free-form one is what a strong model reads; the
order-constrained one (task k is ``"tk"`` and may depend only on ``t1..t(k-1)``) makes every
plan a DAG by construction, which is what lets a 135M-parameter model plan reliably under a
grammar.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from pydantic import BaseModel, Field

from foreman.errors import ConfigError

#: Outputs a judged task may make when its ``max_rounds`` is not given.
DEFAULT_ROUNDS = 2


class Task(BaseModel):
    """One subtask: what to do, who does it, and which tasks' outputs it needs."""

    id: str = Field(min_length=1)
    worker: str
    instructions: str
    depends_on: list[str] = Field(default_factory=list)
    args: dict[str, Any] | None = Field(
        None, description="Structured arguments, for workers that declare an input schema."
    )
    judge: str | None = Field(
        None,
        description="A worker that reviews the output; it is revised with the judge's "
        "feedback until approved or ``max_rounds`` outputs were made (generator-evaluator).",
    )
    max_rounds: int | None = Field(
        None,
        ge=1,
        description="Outputs the task may make under its ``judge``, the first included "
        f"(None: {DEFAULT_ROUNDS}).",
    )
    for_each: str | None = Field(
        None,
        description="Run once per item of a list in a dependency's structured output: the "
        "dependency's id, then the dotted path to the list ('t1.files'); it must be in "
        "depends_on. Each item task gets one item as its input 'item'; dependants get "
        "every item's output, as a list in item order.",
    )


class Plan(BaseModel):
    """An ordered list of tasks forming a DAG through ``depends_on``."""

    tasks: list[Task]
    answer_task: str | None = Field(
        None,
        description="The task whose output is the run's answer as it is, without a "
        "synthesis call (a pipeline's last stage, a fan-out's final aggregate).",
    )

    def task(self, task_id: str) -> Task:
        for task in self.tasks:
            if task.id == task_id:
                return task
        raise KeyError(task_id)

    def dependants(self) -> dict[str, list[str]]:
        """For each task id, the ids of the tasks that depend on it."""
        result: dict[str, list[str]] = {task.id: [] for task in self.tasks}
        for task in self.tasks:
            for dep in task.depends_on:
                result[dep].append(task.id)
        return result

    def topological_order(self) -> list[Task]:
        """Tasks so that each comes after all it depends on (Kahn's algorithm, O(V+E))."""
        waiting = {task.id: len(task.depends_on) for task in self.tasks}
        by_id = {task.id: task for task in self.tasks}
        children = self.dependants()
        ready = deque(task.id for task in self.tasks if not task.depends_on)
        order: list[Task] = []
        while ready:
            task_id = ready.popleft()
            order.append(by_id[task_id])
            for child in children[task_id]:
                waiting[child] -= 1
                if waiting[child] == 0:
                    ready.append(child)
        if len(order) != len(self.tasks):
            raise ValueError("plan has a cycle or a missing dependency; validate it first")
        return order


INSTRUCTIONS_MAX_CHARS = 400

#: The most tasks a planner may be asked for. The order-constrained schema grows with the
#: square of ``max_tasks`` (task k lists the k-1 ids it may depend on): 50 tasks is 30 KB of
#: schema, 10,000 was 430 MB and 4.8 GB of memory. A given plan is not bound by it.
MAX_TASKS_LIMIT = 50


def check_max_tasks(max_tasks: int) -> int:
    """``max_tasks`` if a planner may be asked for that many tasks; ``ConfigError`` if not."""
    if isinstance(max_tasks, bool) or not isinstance(max_tasks, int):
        raise ConfigError(f"max_tasks must be a whole number, not {max_tasks!r}.")
    if not 1 <= max_tasks <= MAX_TASKS_LIMIT:
        raise ConfigError(
            f"max_tasks must be between 1 and {MAX_TASKS_LIMIT}, not {max_tasks}: a plan "
            "that large would not fit a model's context; split the request instead."
        )
    return max_tasks


def constrained_plan_schema(
    worker_names: list[str],
    max_tasks: int,
    *,
    max_dependencies: int = 3,
    with_args: bool = False,
    with_for_each: bool = False,
) -> dict[str, Any]:
    """JSON schema whose every valid instance is an acyclic, well-referenced plan.

    Used as the structured-output schema for the planner call. ``maxLength`` bounds the
    instructions so a small model cannot loop inside a string forever. ``with_args`` admits
    an optional ``args`` object per task, for teams with workers that declare an input
    schema (validation then checks the args against that schema); ``with_for_each`` an
    optional ``for_each`` reference, for teams with a worker whose output has a list.
    ``max_tasks`` is checked by ``check_max_tasks``.
    """
    check_max_tasks(max_tasks)
    items = []
    for k in range(1, max_tasks + 1):
        earlier = [f"t{i}" for i in range(1, k)]
        depends_on: dict[str, Any] = {"type": "array", "items": {"type": "string"}, "maxItems": 0}
        if earlier:
            depends_on = {
                "type": "array",
                "items": {"type": "string", "enum": earlier},
                "maxItems": min(max_dependencies, len(earlier)),
            }
        properties: dict[str, Any] = {
            "id": {"type": "string", "enum": [f"t{k}"]},
            "worker": {"type": "string", "enum": list(worker_names)},
            "instructions": {
                "type": "string",
                "minLength": 1,
                "maxLength": INSTRUCTIONS_MAX_CHARS,
            },
            "depends_on": depends_on,
        }
        if with_args:
            properties["args"] = {"type": "object"}
        if with_for_each and earlier:
            properties["for_each"] = {"type": "string", "minLength": 2, "maxLength": 100}
        items.append(
            {
                "type": "object",
                "properties": properties,
                "required": ["id", "worker", "instructions", "depends_on"],
                "additionalProperties": False,
            }
        )
    return {
        "type": "object",
        "properties": {
            "tasks": {
                "type": "array",
                "prefixItems": items,
                "items": False,
                "minItems": 1,
                "maxItems": max_tasks,
            }
        },
        "required": ["tasks"],
        "additionalProperties": False,
    }
