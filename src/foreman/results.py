"""Structured records of what each task and the whole run produced."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError

from foreman.models.base import Usage
from foreman.plan.schema import Plan

if TYPE_CHECKING:
    from foreman.workers.registry import Registry


class TaskStatus(StrEnum):
    succeeded = "succeeded"
    failed = "failed"  # every attempt and fallback failed; the run went on without it
    skipped = "skipped"  # not run because an input it needs is missing
    waiting = "waiting"  # needs a person's approval before it may run


class RunStatus(StrEnum):
    running = "running"  # being executed now by a live process
    crashed = "crashed"  # stored as running, but the process executing it is gone; resumable
    waiting_approval = "waiting_approval"  # paused until a person approves or rejects tasks
    interrupted = "interrupted"  # stopped by Ctrl-C or a signal; resumable
    succeeded = "succeeded"  # every task succeeded
    partial = "partial"  # an answer was assembled, but some tasks failed or were skipped
    aborted = "aborted"  # a task with an 'abort' policy failed; no answer; resumable
    failed = "failed"  # the run could not go on (planning failed, provider down...); resumable
    cancelled = "cancelled"  # a person cancelled it; final
    over_budget = "over_budget"  # a limit of its budget stopped it; resumable (raise it)
    stalled = "stalled"  # replanning made no progress; what finished is assembled; resumable

    @property
    def finished(self) -> bool:
        """Finished runs have their answer; the others can be resumed (unless cancelled)."""
        return self in (RunStatus.succeeded, RunStatus.partial)

    @property
    def final(self) -> bool:
        """Nothing more will happen to a final run: resume refuses it."""
        return self.finished or self is RunStatus.cancelled


class TaskResult(BaseModel):
    """One task's outcome: its output (text, or a dict for structured workers) and its cost."""

    task_id: str
    worker: str
    status: TaskStatus
    output: Any = None
    error: str | None = None
    attempts: int = Field(0, description="Calls to the worker's models, retries included.")
    review_attempts: int = Field(0, description="Quality-gate calls, retries included.")
    usage: Usage = Field(default_factory=Usage, description="Tokens of every call, reviews too.")
    latency: float = Field(0.0, description="Seconds from start to finish, retries included.")
    model: str | None = Field(None, description="The model that produced the output.")
    revisions: int = Field(0, description="Times the quality gate sent the output back.")
    approved: bool | None = Field(None, description="Quality gate verdict; None if not gated.")
    unreviewed: str | None = Field(
        None, description="Why a quality gate that was asked for gave no verdict."
    )
    missing_inputs: list[str] = Field(default_factory=list)
    input: str | None = Field(
        None, description="The exact message the worker received, kept for replay."
    )
    waiting_on: str | None = Field(
        None,
        description="For a task waiting on a tool call's approval: the call's key "
        "(``<task>#<n>``), what ``foreman approve`` takes.",
    )
    replan: str | None = Field(
        None,
        description="The worker asks the orchestrator to revise the plan, and says why "
        "(a 'REPLAN:' line of a text answer, or a structured answer's 'replan' field).",
    )

    @property
    def succeeded(self) -> bool:
        return self.status is TaskStatus.succeeded


class RunResult(BaseModel):
    """The run's answer, every task's record, and how much to trust each part."""

    run_id: str
    request: str
    status: RunStatus
    plan: Plan | None = Field(None, description="None when the run failed before planning.")
    tasks: dict[str, TaskResult] = Field(default_factory=dict)
    answer: str | None = None
    confidence: dict[str, float] = Field(default_factory=dict)
    usage: Usage = Field(
        default_factory=Usage, description="Every call's tokens: the sum of the run's ledger."
    )
    cost_usd: float | None = Field(
        None, description="US dollars, each call at its own model's price; None if unknown."
    )
    unpriced: list[str] = Field(
        default_factory=list, description="Models that spent tokens and have no known price."
    )
    calls: int = Field(0, description="Model call attempts in the run's ledger.")
    error: str | None = None
    budget_limit: str | None = Field(
        None,
        description="The budget limit that stopped an ``over_budget`` run: max_tokens, "
        "max_cost_usd, max_seconds or max_calls.",
    )
    elapsed: float = 0.0
    plan_attempts: int = Field(0, description="Planner calls in this execution, retries included.")
    synthesis_attempts: int = Field(0, description="Synthesis calls, retries included.")
    replan_attempts: int = Field(
        0, description="Plan revision calls in this execution, retries included."
    )

    @property
    def partial(self) -> bool:
        return self.status is not RunStatus.succeeded

    @property
    def attempts(self) -> int:
        """Every model call the run made: planning, tasks, reviews, synthesis and
        revisions of the plan."""
        tasks = sum(task.attempts + task.review_attempts for task in self.tasks.values())
        return self.plan_attempts + tasks + self.synthesis_attempts + self.replan_attempts


def confidences(plan: Plan, results: dict[str, TaskResult]) -> dict[str, float]:
    """How much each part can be trusted, from 0 to 1.

    A task's own factor is 1 when it succeeded (0.6 if the quality gate still rejected its
    last revision, 0.8 if the gate could give no verdict, 0.9 if it worked around a missing
    input) and 0 when it did not run; it
    is multiplied by the mean confidence of its inputs, so doubt flows downstream.
    """
    scores: dict[str, float] = {}
    for task in plan.topological_order():
        result = results.get(task.id)
        if result is None or not result.succeeded:
            scores[task.id] = 0.0
            continue
        own = 0.6 if result.approved is False else 0.8 if result.unreviewed else 1.0
        if result.missing_inputs:
            own *= 0.9
        deps = [scores.get(dep, 0.0) for dep in task.depends_on]
        scores[task.id] = round(own * (sum(deps) / len(deps) if deps else 1.0), 3)
    return scores


def typed_outputs(results: dict[str, TaskResult], registry: Registry) -> dict[str, TaskResult]:
    """``results`` with each structured worker's output as an instance of its schema.

    The engine and the store carry outputs as JSON; a Python caller gets the model its
    worker declared. An output that no longer fits (the schema changed since it was
    stored) stays as it is rather than failing a finished run.
    """
    typed = {}
    for task_id, result in results.items():
        schema = registry.get(result.worker).output_schema if result.worker in registry else None
        if schema is not None and isinstance(result.output, dict):
            try:
                result = result.model_copy(update={"output": schema.model_validate(result.output)})
            except ValidationError:
                pass
        typed[task_id] = result
    return typed
