"""Planner prompts, kept apart from the code that sends them."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

from foreman.plan.foreach import list_fields
from foreman.workers.registry import Registry
from foreman.workers.spec import Worker

PLANNER_SYSTEM = """\
You are the orchestrator of a team of specialist workers. Break the user's request into a \
small plan of subtasks. Each subtask goes to exactly one worker. A subtask lists in \
"depends_on" the ids of earlier subtasks whose output it needs; subtasks that do not need \
each other run in parallel, so only add a dependency when the output is really needed.

Workers:
{workers}

Rules:
- Use at most {max_tasks} tasks; fewer is better.
- Task ids are "t1", "t2", ... in order; a task may depend only on tasks before it.
- "instructions" says precisely what that worker must do, in one or two sentences. The \
worker sees only these instructions and the outputs of its dependencies, never the request.
- Use only the workers listed above.
{args_rule}{for_each_rule}{budget_rule}
Answer with JSON only. A plan for this request could be:
{example}
Adapt it: split the work differently, use other workers or more tasks where the request \
has several parts."""

ARGS_RULE = (
    '- Workers marked "args" need an "args" object in their task, matching the schema shown.\n'
)

FOR_EACH_RULE = (
    '- Workers marked "lists" return those list fields. To do the same work once per item '
    'of such a list, in parallel, give one task "for_each": the id of the task that returns '
    'the list, a dot, the field ("t1.files"), with that id in its "depends_on"; it runs '
    'once per item (each copy sees its item as input "item"), and tasks depending on it '
    "get all the results as a list.\n"
)

BUDGET_RULE = (
    "- The whole run (planning, every task, the final answer) must cost at most {budget}; "
    "each worker's typical cost per task is shown after its name. Use fewer or cheaper "
    "tasks to stay within it.\n"
)

PLAN_RETRY = """\
That plan cannot run. Problems:
{errors}
Write the whole plan again, corrected, as JSON only."""


def planner_system_prompt(
    registry: Registry,
    max_tasks: int,
    request: str,
    *,
    budget_usd: float | None = None,
    worker_costs: Mapping[str, float | None] | None = None,
) -> str:
    """The planner's instructions; with ``budget_usd``, the budget and each worker's typical
    cost per task (``worker_costs``, None: unknown), so the model can plan within it."""
    lines = []
    for worker in registry:
        line = f"- {worker.name}: {worker.description}"
        if budget_usd is not None:
            price = (worker_costs or {}).get(worker.name)
            typical = "cost unknown" if price is None else f"about {format_usd(price)} a task"
            line = f"- {worker.name} ({typical}): {worker.description}"
        if worker.input_schema is not None:
            line += f" (args: {json.dumps(worker.input_schema.model_json_schema())})"
        if lists := output_lists(worker):
            line += f" (lists: {', '.join(lists)})"
        lines.append(line)
    has_args = any(worker.input_schema is not None for worker in registry)
    return PLANNER_SYSTEM.format(
        workers="\n".join(lines),
        max_tasks=max_tasks,
        args_rule=ARGS_RULE if has_args else "",
        for_each_rule=FOR_EACH_RULE if any(map(output_lists, registry)) else "",
        budget_rule=BUDGET_RULE.format(budget=format_usd(budget_usd)) if budget_usd else "",
        example=_example_plan(registry, request, max_tasks),
    )


def output_lists(worker: Worker) -> list[str]:
    """The list fields of ``worker``'s structured output, which a task may run for each of."""
    schema = worker.output_schema
    return list_fields(schema.model_json_schema()) if schema is not None else []


def _example_plan(registry: Registry, request: str, max_tasks: int) -> str:
    """A small plan written from the request itself: two independent tasks, then one that
    combines them.

    Small models copy their example; an example about the actual request means a copied
    example is still a sensible plan, while strong models treat it as a starting point.
    Its shape is the point of foreman, so it is what a copy should show: work that does not
    depend on other work runs side by side, and only the final task waits for both.
    """
    names = registry.names()
    subject = " ".join(request.split())[:200]
    gather = "researcher" if "researcher" in names else names[0]
    combine = "writer" if "writer" in names else names[-1]
    others = [name for name in names if name not in (gather, combine)]
    weigh = "analyst" if "analyst" in others else (others[0] if others else None)
    if combine == gather or max_tasks < 2:
        tasks = [_task(1, gather, f"Answer: {subject}", [])]
    elif weigh is None or max_tasks < 3:
        tasks = [
            _task(1, gather, f"Gather what is needed for: {subject}", []),
            _task(2, combine, f"Using the research: {subject}", ["t1"]),
        ]
    else:
        tasks = [
            _task(1, gather, f"Research the facts for: {subject}", []),
            _task(2, weigh, f"Analyse what matters most for: {subject}", []),
            _task(3, combine, f"Combine the research and the analysis: {subject}", ["t1", "t2"]),
        ]
    return json.dumps({"tasks": tasks}, ensure_ascii=False)


def _task(number: int, worker: str, instructions: str, depends_on: list[str]) -> dict:
    return {
        "id": f"t{number}",
        "worker": worker,
        "instructions": instructions,
        "depends_on": depends_on,
    }


def plan_retry_prompt(errors: list[str]) -> str:
    return PLAN_RETRY.format(errors="\n".join(f"- {e}" for e in errors))


def format_usd(dollars: float) -> str:
    """Two significant digits, at least cents: ``$0.12``, ``$0.0034``, ``$0.02``, ``$12.50``,
    so a cheap call reads as what it is, never as ``$0.00``."""
    if dollars == 0:
        return "$0"
    if dollars < 0.0001:
        return "<$0.0001"
    decimals = max(2, 1 - math.floor(math.log10(dollars)))
    text = f"{dollars:,.{decimals}f}"
    while text.endswith("0") and len(text.partition(".")[2]) > 2:
        text = text[:-1]
    return "$" + text


def plan_over_budget(estimated: float, budget: float) -> str:
    """The rejection a plan estimated over the budget gets, like any validation error."""
    return (
        f"The plan's estimated cost {format_usd(estimated)} exceeds the budget "
        f"{format_usd(budget)}: use fewer or cheaper tasks."
    )


def plan_unpriced(models: list[str]) -> str:
    return (
        f"The plan's cost cannot be estimated: no price is known for {', '.join(models)}. "
        "Within a budget, use only workers whose cost is known."
    )
