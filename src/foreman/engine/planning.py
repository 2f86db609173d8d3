"""Getting a run its plan: the planner model asked, and corrected, until a plan validates;
or a plan given by the caller checked before it runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from foreman.engine.calls import retried
from foreman.errors import PlanError
from foreman.events import (
    Event,
    PlanRejected,
)
from foreman.ledger.recorder import CallScope
from foreman.models.base import Usage
from foreman.models.retry import CallLog
from foreman.plan.planner import Planner
from foreman.plan.schema import Plan
from foreman.plan.validate import validate_plan

if TYPE_CHECKING:
    from foreman.engine.settings import RunDeps
    from foreman.workers.registry import Registry

OnEvent = Callable[[Event], None]


async def make_plan(
    deps: RunDeps,
    run_id: str,
    request: str,
    emit: OnEvent,
    scope: CallLog | None = None,
) -> tuple[Plan, Usage]:
    """Ask the planner model for a validated plan, reporting each rejected attempt and
    each retried call; ``scope`` books every planner call as it is made, so a planning
    that fails in the end still says what it cost."""
    planner = Planner(
        deps.planner(),
        deps.registry,
        max_tasks=deps.settings.max_tasks,
        max_retries=deps.settings.max_plan_retries,
        retry=deps.retry,
        timeout=deps.own_timeout(),
        budget_usd=deps.plan_budget_usd,
        estimator=await deps.estimator() if deps.plan_budget_usd else None,
    )
    try:
        outcome = await planner.plan(
            request,
            on_rejected=lambda attempt, errors: emit(
                PlanRejected(run_id=run_id, attempt=attempt, errors=errors)
            ),
            on_retry=retried(emit, run_id, "plan"),
            scope=scope,
        )
    finally:
        if isinstance(scope, CallScope):  # its last call judged: logs and traces hear it
            scope.release()
    return outcome.plan, outcome.usage


def check_given_plan(registry: Registry, plan: Plan) -> None:
    """``PlanError`` unless ``plan`` can run on this team (any number of tasks)."""
    errors = validate_plan(plan, registry, max_tasks=len(plan.tasks))
    if errors:
        raise PlanError("The given plan cannot run:", errors=errors)
