"""The planner: ask a model for a plan, validate it, and show it its own errors until it fits.

Structured output is requested with the order-constrained schema, so providers that enforce
schemas (llama.cpp grammars, OpenAI ``response_format``, Anthropic forced tools) can only
return acyclic plans. Validation still runs on every answer: not every provider enforces
everything, and a plan is the one input that can waste a whole run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from foreman.errors import ConfigError, OutputValidationError, PlanError
from foreman.ledger.recorder import CallScope
from foreman.models.base import Message, Model, ModelRequest, Usage
from foreman.models.retry import (
    CallLog,
    OnRetry,
    RetryPolicy,
    complete_with_retry,
    numbered_after,
)
from foreman.plan.prompts import (
    format_usd,
    output_lists,
    plan_over_budget,
    plan_retry_prompt,
    plan_unpriced,
    planner_system_prompt,
)
from foreman.plan.schema import Plan, constrained_plan_schema
from foreman.plan.validate import parse_plan, validate_plan
from foreman.workers.registry import Registry


class CostedPlan(Protocol):
    """An estimate's figures the planner checks a plan's cost with."""

    cost_usd: float | None
    unpriced: list[str]


class PlanCoster(Protocol):
    """What the planner asks of an estimator. The estimator knows the engine's prompts and
    the ledger's history (``foreman.engine.estimate.Estimator``); the planner, below the
    engine, only asks it these questions."""

    def plan(self, plan: Plan, request: str = "") -> CostedPlan: ...

    def worker_costs(self) -> dict[str, float | None]: ...

    def unpriced_steps(self) -> list[str]: ...


@dataclass
class PlanOutcome:
    """A valid plan and what it cost to get it; ``rejected`` lists each refused attempt."""

    plan: Plan
    usage: Usage
    rejected: list[list[str]] = field(default_factory=list)
    attempts: int = 0  # model calls, retries included


class Planner:
    """Turns a request into a validated ``Plan`` with a bounded number of corrections.

    With ``budget_usd`` (and the ``estimator`` to check it), the model is told the budget
    and each worker's typical cost, and a valid plan whose estimate exceeds the budget is
    handed back to it like any other validation error.
    """

    def __init__(
        self,
        model: Model,
        registry: Registry,
        *,
        max_tasks: int = 8,
        max_retries: int = 2,
        max_tokens: int = 1500,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        budget_usd: float | None = None,
        estimator: PlanCoster | None = None,
    ) -> None:
        if budget_usd is not None and estimator is None:
            raise ConfigError("A plan budget needs an estimator to check plans against it.")
        self.model = model
        self.registry = registry
        self.max_tasks = max_tasks
        self.max_retries = max_retries
        self.max_tokens = max_tokens
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.budget_usd = budget_usd
        self.estimator = estimator

    async def plan(
        self,
        request: str,
        on_rejected: Callable[[int, list[str]], None] | None = None,
        *,
        on_retry: OnRetry | None = None,
        scope: CallLog | None = None,
    ) -> PlanOutcome:
        """A valid plan for ``request``; ``on_rejected(attempt, errors)`` hears each refusal.

        ``on_retry(attempt, error, delay)`` hears each model call that is retried (numbered
        across the whole planning); ``scope`` records every attempt in the run's call
        ledger as it is made, so a planning that fails in the end still accounts for what
        it cost.
        """
        messages = [Message(role="user", content=request)]
        schema = constrained_plan_schema(
            self.registry.names(),
            self.max_tasks,
            with_args=any(worker.input_schema is not None for worker in self.registry),
            with_for_each=any(map(output_lists, self.registry)),
        )
        system = self._system_prompt(request)
        usage = Usage()
        rejected: list[list[str]] = []
        raw = ""
        attempts = 0
        for _ in range(self.max_retries + 1):
            over_budget = False  # this attempt's plan is valid but does not fit the budget
            call = await complete_with_retry(
                self.model,
                ModelRequest(
                    system=system,
                    messages=messages,
                    output_schema=schema,
                    max_tokens=self.max_tokens,
                    temperature=0.0,
                ),
                self.retry,
                call_timeout=self.timeout,
                caller="the planner",
                on_retry=numbered_after(on_retry, attempts),
                scope=scope,
            )
            attempts += call.attempts
            usage += call.usage
            if call.error is not None and not isinstance(call.error, OutputValidationError):
                raise call.error  # rate limits that outlasted the retries, bad keys: not a plan
            raw = call.output or ""
            plan, errors = (None, [str(call.error)]) if call.error else parse_plan(raw)
            if plan is not None:
                errors = validate_plan(plan, self.registry, max_tasks=self.max_tasks)
                if not errors:
                    errors = self._budget_problems(plan, request)
                    over_budget = bool(errors)
                if not errors:
                    return PlanOutcome(plan=plan, usage=usage, rejected=rejected, attempts=attempts)
            rejected.append(errors)
            if isinstance(scope, CallScope):  # answered, but no plan to use: a failed call
                scope.refuse_last("PlanRejected", "; ".join(errors))
            if on_rejected is not None:
                on_rejected(len(rejected), errors)
            messages = [
                *messages,
                Message(role="assistant", content=raw or "(no answer)"),
                Message(role="user", content=plan_retry_prompt(errors)),
            ]
        if over_budget and self.budget_usd is not None:
            raise PlanError(
                f"The planner ({self.model.name}) wrote no plan within the budget of "
                f"{format_usd(self.budget_usd)} in {self.max_retries + 1} attempts. Raise "
                "the budget (--plan-budget-usd), use cheaper workers or ask for less. "
                "Last problems:",
                errors=rejected[-1],
                raw=raw,
            )
        raise PlanError(
            f"The planner ({self.model.name}) wrote no valid plan in "
            f"{self.max_retries + 1} attempts. Try a stronger model (--model) or a clearer "
            "request. Last problems:",
            errors=rejected[-1],
            raw=raw,
        )

    def _system_prompt(self, request: str) -> str:
        """The planner's instructions; with a budget, the budget and the workers' costs,
        after checking that the calls every plan makes (planning, synthesis) have prices."""
        if self.budget_usd is None or self.estimator is None:
            return planner_system_prompt(self.registry, self.max_tasks, request)
        unpriced = self.estimator.unpriced_steps()
        if unpriced:
            raise ConfigError(
                f"A plan budget needs prices, and no price is known for {', '.join(unpriced)}. "
                "Set FOREMAN_PRICES (see docs/estimates.md) or drop the budget."
            )
        return planner_system_prompt(
            self.registry,
            self.max_tasks,
            request,
            budget_usd=self.budget_usd,
            worker_costs=self.estimator.worker_costs(),
        )

    def _budget_problems(self, plan: Plan, request: str) -> list[str]:
        """Why a valid plan does not fit the budget (for the model); none if it does."""
        if self.budget_usd is None or self.estimator is None:
            return []
        estimate = self.estimator.plan(plan, request)
        if estimate.cost_usd is None:
            return [plan_unpriced(estimate.unpriced)]
        if estimate.cost_usd > self.budget_usd:
            return [plan_over_budget(estimate.cost_usd, self.budget_usd)]
        return []
