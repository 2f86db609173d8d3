"""Assembly: one answer from all task results, by synthesis (a model call) or concatenation.

Whatever the method, a partial run says so in the answer itself, task by task, with each
part's confidence: a reader of the answer alone must be able to tell what is missing.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from foreman.engine.calls import call_worker
from foreman.engine.prompts import SYNTHESIS_SYSTEM, synthesis_input
from foreman.models.base import Model, Usage
from foreman.models.retry import CallLog, OnRetry, RetryPolicy
from foreman.plan.foreach import item_ids_of
from foreman.plan.schema import Plan
from foreman.results import TaskResult
from foreman.workers.spec import Worker

AssemblyMethod = Literal["synthesis", "concat"]
#: Fits entries to the context budget: (entries, purpose, goal) -> entries.
Fit = Callable[[list[dict[str, Any]], str, str], Awaitable[list[dict[str, Any]]]]

SYNTHESISER = Worker(
    name="synthesiser",
    description="Assembles the final answer from all task results.",
    system_prompt=SYNTHESIS_SYSTEM,
    max_tokens=1500,
    timeout=300,
)


@dataclass
class Assembly:
    answer: str
    method: Literal["synthesis", "concat", "single"]
    usage: Usage
    attempts: int = 0  # synthesis calls, retries included


async def assemble(
    method: AssemblyMethod,
    request: str,
    plan: Plan,
    results: dict[str, TaskResult],
    confidence: dict[str, float],
    model: Model,
    *,
    retry: RetryPolicy | None = None,
    call_timeout: float | None = None,
    on_retry: OnRetry | None = None,
    scope: CallLog | None = None,
    fit: Fit | None = None,
) -> Assembly:
    """The answer, by ``method``, or the plan's ``answer_task`` output as it is; a
    synthesis call uses ``retry`` and ``call_timeout`` (the orchestrator's) when given,
    reports each retry to ``on_retry``, and reads the results through ``fit`` (context
    compaction, ``Compactor.fit``) when given."""
    ordered = plan.topological_order()
    note = partial_note(plan, results, confidence)
    succeeded = [task for task in ordered if results[task.id].succeeded]
    if plan.answer_task is not None:  # the plan names its answer: no call to make
        chosen = results.get(plan.answer_task)
        if chosen is not None and chosen.succeeded:
            return Assembly(_text(chosen.output) + note, "single", Usage())
        return Assembly(_concat(plan, results, confidence) + note, "concat", Usage())
    if method == "concat" or not succeeded:  # nothing to synthesise from: say so plainly
        return Assembly(_concat(plan, results, confidence) + note, "concat", Usage())
    if len(plan.tasks) == 1 and succeeded:
        return Assembly(_text(results[succeeded[0].id].output), "single", Usage())
    parts = [
        {
            "id": task.id,
            "instructions": task.instructions,
            "status": results[task.id].status.value,
            "confidence": confidence.get(task.id, 0.0),
            "output": results[task.id].output if results[task.id].succeeded else None,
        }
        for task in ordered
    ]
    if fit is not None:  # over the context budget, older results reach it as summaries
        goal = f"write the final answer to the request: {_brief(request)}"
        parts = await fit(parts, "synthesis", goal)
    synthesiser = SYNTHESISER if retry is None else SYNTHESISER.model_copy(update={"retry": retry})
    outcome = await call_worker(
        synthesiser,
        [model],
        SYNTHESIS_SYSTEM,
        synthesis_input(request, parts),
        call_timeout=call_timeout,
        on_retry=on_retry,
        scope=scope,
    )
    if outcome.error is not None:
        fallback = _concat(plan, results, confidence)
        note += f"\n\n(Synthesis failed, so the parts are shown as they are: {outcome.error})"
        return Assembly(fallback + note, "concat", outcome.usage, outcome.attempts)
    return Assembly(
        str(outcome.output).strip() + note, "synthesis", outcome.usage, outcome.attempts
    )


def partial_note(plan: Plan, results: dict[str, TaskResult], confidence: dict[str, float]) -> str:
    """An empty string for a complete run; otherwise what is missing and what to trust."""
    # In plan order, not finishing order, so the same outcome always reads the same.
    problems = [
        results[task.id]
        for task in plan.tasks
        if task.id in results and not results[task.id].succeeded
    ]
    problems += [  # items of for-each tasks, each under its task
        results[item]
        for task in plan.tasks
        if task.for_each
        for item in item_ids_of(task.id, results)
        if not results[item].succeeded
    ]
    if not problems:
        return ""
    lines = ["", "", "---", "Partial result: some parts could not be produced."]
    for result in problems:
        lines.append(f"- {result.task_id} ({result.worker}) {result.status.value}: {result.error}")
    scores = ", ".join(f"{task.id} {confidence.get(task.id, 0.0):.2f}" for task in plan.tasks)
    lines.extend(["", f"Confidence per part: {scores}"])
    return "\n".join(lines)


def _concat(plan: Plan, results: dict[str, TaskResult], confidence: dict[str, float]) -> str:
    sections = []
    for task in plan.topological_order():
        result = results[task.id]
        heading = f"## {task.id} · {task.worker} ({result.status.value}, "
        heading += f"confidence {confidence.get(task.id, 0.0):.2f})"
        body = _text(result.output) if result.succeeded else f"_Not available: {result.error}_"
        sections.append(f"{heading}\n{task.instructions}\n\n{body}")
    return "\n\n".join(sections)


def _text(output: Any) -> str:
    return output if isinstance(output, str) else json.dumps(output, indent=2, ensure_ascii=False)


def _brief(text: str, limit: int = 1000) -> str:
    """``text``, cut at ``limit`` characters: enough to say what a summary is for."""
    return text if len(text) <= limit else text[:limit] + "…"
