"""A run's budget inside the engine: its meter on an execution, and what an over-budget
run answers with.

The limits themselves, and how spending is counted, live in ``foreman.ledger.budget``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from foreman.engine.assembly import assemble
from foreman.errors import BudgetExceededError
from foreman.events import BudgetExceeded
from foreman.ledger.books import Books
from foreman.ledger.budget import Budget, BudgetMeter
from foreman.ledger.recorder import CallLedger
from foreman.models.base import Model
from foreman.plan.schema import Plan
from foreman.results import TaskResult, TaskStatus, confidences


def meter_for(
    run_id: str,
    budget: Budget | None,
    ledger: CallLedger,
    emit: Callable[[Any], None],
    *,
    before: Books,
    seconds_before: float,
    timer: Callable[[], float],
    upstream: BudgetMeter | None = None,
) -> BudgetMeter | None:
    """The budget's meter on this execution's ledger (None: no limits), started now.

    Reaching a limit is announced (``budget_exceeded``). Under ``on_limit="cancel"``, the
    task executing the run (the caller's) is cancelled as ``foreman cancel`` would: that
    cancels every call in flight, and the run ends ``over_budget``.
    """
    if budget is None or not (budget.limited or upstream is not None):
        return None  # a nested run's meter is there for its parent's limits, if none of its own
    executing = asyncio.current_task()
    assert executing is not None

    def announce(exc: BudgetExceededError) -> None:
        emit(
            BudgetExceeded(
                run_id=run_id,
                limit=exc.limit,
                used=exc.used,
                allowed=exc.allowed,
                on_limit=budget.on_limit,
            )
        )

    meter = BudgetMeter(
        budget,
        before=before,
        seconds_before=seconds_before,
        on_exceeded=announce,
        cancel=executing.cancel,
        timer=timer,
        upstream=(upstream, run_id) if upstream is not None else None,
    )
    meter.attach(ledger)
    return meter


async def finished_parts(
    request: str,
    plan: Plan | None,
    results: dict[str, TaskResult],
    exc: BudgetExceededError,
    model: Model,
) -> tuple[str | None, dict[str, float]]:
    """The answer of a run its budget stopped, and each part's confidence.

    No synthesis (a model call the budget no longer allows): the parts that finished, put
    together as ``concat`` does, each unfinished one marked as not run. No answer when
    nothing finished.
    """
    if plan is None:
        return None, {}
    confidence = confidences(plan, results)
    if not any(result.succeeded for result in results.values()):
        return None, confidence
    parts = {
        task.id: results.get(task.id)
        or TaskResult(
            task_id=task.id, worker=task.worker, status=TaskStatus.skipped, error=f"not run: {exc}"
        )
        for task in plan.tasks
    }
    assembly = await assemble("concat", request, plan, parts, confidence, model)
    return assembly.answer, confidence
