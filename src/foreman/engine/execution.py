"""One execution of a run, fresh or resumed: plan -> tasks -> results -> answer, durably.

The flow: take the run's lease; plan (unless a plan exists); run the DAG, checkpointing each
settled task before its dependants start; then assemble, or pause for approvals, or stop on
an abort. Ctrl-C (cancellation) marks the run interrupted, so ``resume`` can continue it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from foreman.engine.approvals import ApprovalGate
from foreman.engine.assembly import assemble
from foreman.engine.journal import RunJournal
from foreman.engine.results import RunResult, RunStatus, TaskResult, TaskStatus, confidences
from foreman.engine.scheduler import run_dag
from foreman.engine.tasks import TaskRunner
from foreman.errors import PlanError, RunAbortedError
from foreman.events import (
    Assembled,
    Event,
    PlanReady,
    PlanRejected,
    RunFinished,
    RunStarted,
    TaskFailed,
    TaskFinished,
    TaskSkipped,
)
from foreman.models.base import Model, Usage
from foreman.plan.planner import Planner
from foreman.plan.schema import Plan, Task
from foreman.plan.validate import validate_plan

if TYPE_CHECKING:
    from foreman.engine.orchestrator import Orchestrator

OnEvent = Callable[[Event], None]


@dataclass
class RunState:
    """What an execution starts from: nothing (a new run) or what a stored run had."""

    run_id: str
    request: str
    plan: Plan | None = None
    plan_usage: Usage = field(default_factory=Usage)
    completed: dict[str, TaskResult] = field(default_factory=dict)
    resumed: bool = False


async def execute(orchestrator: Orchestrator, state: RunState, on_event: OnEvent) -> RunResult:
    """Drive ``state`` to a result under the run's lease; see the module docstring."""
    journal = RunJournal(
        orchestrator.store,
        state.run_id,
        spent=sum((r.usage for r in state.completed.values()), state.plan_usage),
        lease_seconds=orchestrator.lease_seconds,
    )
    delivery = _Delivery(journal, on_event)
    await journal.acquire()
    try:
        return await _drive(orchestrator, state, journal, delivery)
    except asyncio.CancelledError:
        if journal.cancelled:  # `foreman cancel`: the run ends here, as asked
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            return await _cancelled(orchestrator, state, journal, delivery)
        await asyncio.shield(journal.update(RunStatus.interrupted, error="interrupted"))
        raise
    except PlanError as exc:
        await journal.update(RunStatus.aborted, error=str(exc))
        raise
    finally:
        await asyncio.shield(journal.release())


class _Delivery:
    """Records every event, and hands it to the caller; a task's settling event (finished,
    failed, skipped) is handed over only once its checkpoint has committed, so a consumer
    that sees ``task_finished`` knows the task will never run again."""

    SETTLING = (TaskFinished, TaskFailed, TaskSkipped)

    def __init__(self, journal: RunJournal, on_event: OnEvent) -> None:
        self.journal = journal
        self.on_event = on_event
        self.held: dict[str, list[Event]] = {}

    def emit(self, event: Event) -> None:
        self.journal.record(event)
        if isinstance(event, self.SETTLING):
            self.held.setdefault(event.task_id, []).append(event)
        else:
            self.on_event(event)

    async def checkpoint(self, result: TaskResult) -> None:
        await self.journal.checkpoint(result)
        for event in self.held.pop(result.task_id, ()):
            self.on_event(event)


async def _drive(
    orchestrator: Orchestrator, state: RunState, journal: RunJournal, delivery: _Delivery
) -> RunResult:
    emit = delivery.emit
    started = time.perf_counter()
    run_id, request = state.run_id, state.request
    emit(RunStarted(run_id=run_id, request=request, resumed=state.resumed))
    plan, plan_usage = state.plan, state.plan_usage
    if plan is None:
        plan, plan_usage = await make_plan(orchestrator, run_id, request, emit)
        await orchestrator.store.save_plan(run_id, plan, plan_usage)
        journal.spend(plan_usage)
    emit(PlanReady(run_id=run_id, plan=plan, usage=plan_usage))

    runner = TaskRunner(
        run_id,
        orchestrator.registry,
        orchestrator.models,
        emit,
        validator=orchestrator.validator,
        max_revisions=orchestrator.max_revisions,
        gate=ApprovalGate(
            orchestrator.store, emit, orchestrator.approve, orchestrator.auto_approve
        ),
    )
    results = dict(state.completed)
    error: str | None = None
    try:
        await run_dag(
            plan,
            _checkpointed(runner, delivery),
            concurrency=orchestrator.concurrency,
            worker_limits={
                w.name: w.max_concurrency for w in orchestrator.registry if w.max_concurrency
            },
            results=results,
        )
    except RunAbortedError as exc:
        error = str(exc)
        if exc.result is not None:  # keep the failed task's record (its tokens are spent)
            results[exc.task_id] = exc.result
    confidence = confidences(plan, results)

    status, answer = _status(error, results), None
    if status in (RunStatus.succeeded, RunStatus.partial):
        assembly = await assemble(
            orchestrator.assembly, request, plan, results, confidence, orchestrator.models.default
        )
        journal.spend(assembly.usage)
        answer = assembly.answer
        emit(Assembled(run_id=run_id, method=assembly.method, answer=answer))
    result = RunResult(
        run_id=run_id,
        request=request,
        status=status,
        plan=plan,
        tasks=results,
        answer=answer,
        confidence=confidence,
        usage=journal.spent,
        error=error,
        elapsed=time.perf_counter() - started,
    )
    emit(RunFinished(run_id=run_id, result=result))
    await journal.update(status, answer=answer, error=error)
    return result


async def _cancelled(
    orchestrator: Orchestrator, state: RunState, journal: RunJournal, delivery: _Delivery
) -> RunResult:
    """The run as its cancellation left it: the tasks checkpointed so far, no answer."""
    record = await orchestrator.store.get_run(state.run_id)
    result = RunResult(
        run_id=state.run_id,
        request=state.request,
        status=RunStatus.cancelled,
        plan=record.plan,
        tasks=await orchestrator.store.load_tasks(state.run_id),
        usage=journal.spent,
        error="cancelled (foreman cancel)",
    )
    delivery.emit(RunFinished(run_id=state.run_id, result=result))
    await journal.update(RunStatus.cancelled, error=result.error)
    return result


async def make_plan(
    orchestrator: Orchestrator, run_id: str, request: str, emit: OnEvent
) -> tuple[Plan, Usage]:
    """Ask the planner model for a validated plan, reporting each rejected attempt."""
    model = orchestrator.planner_model
    planner = Planner(
        model if isinstance(model, Model) else orchestrator.models.get(model),
        orchestrator.registry,
        max_tasks=orchestrator.max_tasks,
        max_retries=orchestrator.max_plan_retries,
    )
    outcome = await planner.plan(
        request,
        on_rejected=lambda attempt, errors: emit(
            PlanRejected(run_id=run_id, attempt=attempt, errors=errors)
        ),
    )
    return outcome.plan, outcome.usage


def check_given_plan(orchestrator: Orchestrator, plan: Plan) -> None:
    errors = validate_plan(plan, orchestrator.registry, max_tasks=len(plan.tasks))
    if errors:
        raise PlanError("The given plan cannot run:", errors=errors)


def _checkpointed(
    runner: TaskRunner, delivery: _Delivery
) -> Callable[[Task, dict[str, TaskResult]], Awaitable[TaskResult]]:
    """The runner, with each settled task stored before the scheduler sees it."""

    async def execute(task: Task, deps: dict[str, TaskResult]) -> TaskResult:
        try:
            result = await runner(task, deps)
        except RunAbortedError as exc:
            if exc.result is not None:
                await delivery.checkpoint(exc.result)
            raise
        await delivery.checkpoint(result)
        return result

    return execute


def _status(error: str | None, results: dict[str, TaskResult]) -> RunStatus:
    if error is not None:
        return RunStatus.aborted
    if any(result.status is TaskStatus.waiting for result in results.values()):
        return RunStatus.waiting_approval
    if all(result.succeeded for result in results.values()):
        return RunStatus.succeeded
    return RunStatus.partial
