"""The planner: ask a model for a plan, validate it, and show it its own errors until it fits.

Structured output is requested with the order-constrained schema, so providers that enforce
schemas (llama.cpp grammars, OpenAI ``response_format``, Anthropic forced tools) can only
return acyclic plans. Validation still runs on every answer: not every provider enforces
everything, and a plan is the one input that can waste a whole run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from foreman.errors import OutputValidationError, PlanError
from foreman.models.base import Message, Model, ModelRequest, Usage
from foreman.models.retry import (
    CallLog,
    CallOutcome,
    OnRetry,
    RetryPolicy,
    complete_with_retry,
    numbered_after,
)
from foreman.plan.prompts import plan_retry_prompt, planner_system_prompt
from foreman.plan.schema import Plan, constrained_plan_schema
from foreman.plan.validate import parse_plan, validate_plan
from foreman.workers.registry import Registry


@dataclass
class PlanOutcome:
    """A valid plan and what it cost to get it; ``rejected`` lists each refused attempt."""

    plan: Plan
    usage: Usage
    rejected: list[list[str]] = field(default_factory=list)
    attempts: int = 0  # model calls, retries included


class Planner:
    """Turns a request into a validated ``Plan`` with a bounded number of corrections."""

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
    ) -> None:
        self.model = model
        self.registry = registry
        self.max_tasks = max_tasks
        self.max_retries = max_retries
        self.max_tokens = max_tokens
        self.retry = retry or RetryPolicy()
        self.timeout = timeout

    async def plan(
        self,
        request: str,
        on_rejected: Callable[[int, list[str]], None] | None = None,
        *,
        on_retry: OnRetry | None = None,
        on_call: Callable[[CallOutcome], None] | None = None,
        scope: CallLog | None = None,
    ) -> PlanOutcome:
        """A valid plan for ``request``; ``on_rejected(attempt, errors)`` hears each refusal.

        ``on_retry(attempt, error, delay)`` hears each model call that is retried (numbered
        across the whole planning), ``on_call(outcome)`` each call's attempts and tokens as it
        is made, so a planning that fails in the end still accounts for what it cost;
        ``scope`` records every attempt in the run's call ledger.
        """
        messages = [Message(role="user", content=request)]
        schema = constrained_plan_schema(
            self.registry.names(),
            self.max_tasks,
            with_args=any(worker.input_schema is not None for worker in self.registry),
        )
        system = planner_system_prompt(self.registry, self.max_tasks, request)
        usage = Usage()
        rejected: list[list[str]] = []
        raw = ""
        attempts = 0
        for _ in range(self.max_retries + 1):
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
            if on_call is not None:
                on_call(call)
            if call.error is not None and not isinstance(call.error, OutputValidationError):
                raise call.error  # rate limits that outlasted the retries, bad keys: not a plan
            raw = call.output or ""
            plan, errors = (None, [str(call.error)]) if call.error else parse_plan(raw)
            if plan is not None:
                errors = validate_plan(plan, self.registry, max_tasks=self.max_tasks)
                if not errors:
                    return PlanOutcome(plan=plan, usage=usage, rejected=rejected, attempts=attempts)
            rejected.append(errors)
            if on_rejected is not None:
                on_rejected(len(rejected), errors)
            messages = [
                *messages,
                Message(role="assistant", content=raw or "(no answer)"),
                Message(role="user", content=plan_retry_prompt(errors)),
            ]
        raise PlanError(
            f"The planner ({self.model.name}) wrote no valid plan in "
            f"{self.max_retries + 1} attempts. Try a stronger model (--model) or a clearer "
            "request. Last problems:",
            errors=rejected[-1],
            raw=raw,
        )
