"""One execution of a run, fresh or resumed: plan -> tasks -> results -> answer, durably.

The flow: take the run's lease; plan (unless a plan exists); run the DAG, checkpointing each
settled task before its dependants start; then assemble, or pause for approvals, or stop on
an abort. Ctrl-C (cancellation) marks the run interrupted, so ``resume`` can continue it.
A run with a budget stops when a limit is reached (``foreman.ledger.budget``) and ends
``over_budget`` with what finished; ``resume`` with a raised limit goes on from there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from foreman.engine.approvals import ApprovalGate
from foreman.engine.assembly import SYNTHESISER, assemble
from foreman.engine.budgeting import finished_parts, meter_for
from foreman.engine.calls import retried
from foreman.engine.delivery import Delivery
from foreman.engine.journal import RunJournal
from foreman.engine.planning import make_plan
from foreman.engine.results import (
    RunResult,
    RunStatus,
    TaskResult,
    TaskStatus,
    confidences,
    typed_outputs,
)
from foreman.engine.scheduler import Halt, run_dag
from foreman.engine.tasks import TaskRunner
from foreman.errors import BudgetExceededError, ForemanError, RunAbortedError
from foreman.events import (
    Assembled,
    Event,
    PlanReady,
    RunFinished,
    RunStarted,
)
from foreman.ledger.books import Books
from foreman.ledger.budget import Budget, BudgetMeter
from foreman.ledger.records import CallPurpose, CallRecord
from foreman.models.base import Usage
from foreman.models.retry import CallOutcome
from foreman.plan.schema import Plan, Task

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
    #: What earlier executions spent (their ledger), counted on from there.
    before: Books = field(default_factory=Books)
    #: The limits this execution runs under, and the seconds earlier executions ran.
    budget: Budget | None = None
    seconds_before: float = 0.0
    #: Their calls, so this execution numbers a task's attempts on from theirs.
    earlier_calls: list[CallRecord] = field(default_factory=list)
    #: How the run is driven: a plan written up front (``plan``) or turn by turn by a
    #: tool-calling orchestrator (``delegate``, ``engine.delegating``). A resumed run keeps
    #: the mode it was started with.
    mode: str = "plan"


async def execute(orchestrator: Orchestrator, state: RunState, on_event: OnEvent) -> RunResult:
    """Drive ``state`` to a result under the run's lease; see the module docstring.

    Whatever happens once the lease is held, the run ends in a state that tells the truth:
    Ctrl-C leaves it ``interrupted``; any error (no plan, provider down, a consumer of the
    events that raised) leaves it ``failed`` with the error and what it spent, the last
    event is ``run_finished``, and the original error is re-raised to the caller.
    """
    journal = RunJournal(
        orchestrator.store,
        state.run_id,
        spent=state.before.usage,
        keep_prompts=orchestrator.record_prompts,
        on_call=orchestrator.observers.on_call if orchestrator.observers else None,
        lease_seconds=orchestrator.lease_seconds,
        started_window=orchestrator.started_write_window,
    )
    journal.ledger.count_on(state.earlier_calls)
    if orchestrator.observers:
        on_event = orchestrator.observers.watching(on_event)
    delivery = Delivery(journal, on_event)
    progress = _Progress(results=dict(state.completed), started=orchestrator.timer())
    meter = meter_for(
        state.run_id,
        state.budget,
        journal.ledger,
        delivery.emit,
        before=state.before,
        seconds_before=state.seconds_before,
        timer=orchestrator.timer,
    )
    await journal.acquire()
    try:
        if state.resumed:  # running again: not the status it paused or died with
            await journal.update(RunStatus.running)
        drive = _drive
        if state.mode == "delegate":
            from foreman.engine.delegating import drive_delegating as drive
        return await drive(orchestrator, state, journal, delivery, progress, meter)
    except asyncio.CancelledError:
        if journal.cancelled and not progress.settled:  # `foreman cancel`: end here, as asked
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            return await _cancelled(orchestrator, state, journal, delivery, progress)
        if meter is not None and meter.cancelled and not progress.settled:
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            assert meter.exceeded is not None  # the budget cancelled the calls in flight
            tasks = await orchestrator.store.load_tasks(state.run_id)
            return await _over_budget(orchestrator, state, delivery, progress, tasks, meter)
        if not progress.settled:
            await asyncio.shield(journal.update(RunStatus.interrupted, error="interrupted"))
        raise
    except Exception as exc:
        if not progress.settled:
            try:
                await asyncio.shield(_fail(orchestrator, state, journal, delivery, progress, exc))
            except Exception as also:  # the store is failing too: the first error still leads
                exc.add_note(f"Recording the run as failed failed as well: {also}")
        raise
    finally:
        if meter is not None:
            meter.detach()
        await asyncio.shield(journal.release())


@dataclass
class _Progress:
    """What an execution has got so far, so a failure can still report it."""

    results: dict[str, TaskResult]
    started: float
    plan_attempts: int = 0
    #: True once the run's final status is stored: nothing may overwrite it after that.
    settled: bool = False


async def _fail(
    orchestrator: Orchestrator,
    state: RunState,
    journal: RunJournal,
    delivery: Delivery,
    progress: _Progress,
    exc: Exception,
) -> None:
    """Record the run as failed, with the error and what it spent, and end the stream."""
    error = str(exc) if isinstance(exc, ForemanError) else f"{type(exc).__name__}: {exc}"
    plan = state.plan
    result = RunResult(
        run_id=state.run_id,
        request=state.request,
        status=RunStatus.failed,
        plan=plan,
        tasks=progress.results,
        confidence=confidences(plan, progress.results) if plan is not None else {},
        error=error,
        **_books(state, journal),
        elapsed=orchestrator.timer() - progress.started,
        plan_attempts=progress.plan_attempts,
    )
    await delivery.finish(RunFinished(run_id=state.run_id, result=result), quiet=True)


async def _drive(
    orchestrator: Orchestrator,
    state: RunState,
    journal: RunJournal,
    delivery: Delivery,
    progress: _Progress,
    meter: BudgetMeter | None,
) -> RunResult:
    emit = delivery.emit
    run_id, request = state.run_id, state.request
    emit(RunStarted(run_id=run_id, request=request, resumed=state.resumed))
    plan, plan_usage = state.plan, state.plan_usage
    if plan is None:

        def planned(call: CallOutcome) -> None:
            progress.plan_attempts += call.attempts

        try:
            plan, _ = await make_plan(
                orchestrator, run_id, request, emit, planned, journal.ledger.scope(CallPurpose.plan)
            )
        except BudgetExceededError:
            assert meter is not None
            results = progress.results
            return await _over_budget(orchestrator, state, delivery, progress, results, meter)
        plan_usage = journal.ledger.usage_of("plan")  # attempts cut short at their estimate
        await journal.save_plan(plan, plan_usage)
        state.plan = plan
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
        timeout=orchestrator.timeout,
        ledger=journal.ledger,
    )
    results = progress.results
    error: str | None = None
    try:
        await run_dag(
            plan,
            _checkpointed(runner, delivery, meter),
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
    if error is None and meter is not None and meter.exceeded is not None:
        return await _over_budget(orchestrator, state, delivery, progress, results, meter)
    confidence = confidences(plan, results)

    status, answer, synthesis_attempts = _status(error, results), None, 0
    if status in (RunStatus.succeeded, RunStatus.partial):
        try:
            assembly = await assemble(
                orchestrator.assembly,
                request,
                plan,
                results,
                confidence,
                orchestrator.models.default,
                retry=orchestrator.retry,
                call_timeout=orchestrator.own_timeout(SYNTHESISER.timeout),
                on_retry=retried(emit, run_id, "synthesis"),
                scope=journal.ledger.scope(CallPurpose.synthesis),
            )
        except BudgetExceededError:
            assert meter is not None
            return await _over_budget(orchestrator, state, delivery, progress, results, meter)
        answer, synthesis_attempts = assembly.answer, assembly.attempts
        emit(Assembled(run_id=run_id, method=assembly.method, answer=answer))
    result = RunResult(
        run_id=run_id,
        request=request,
        status=status,
        plan=plan,
        tasks=results,
        answer=answer,
        confidence=confidence,
        error=error,
        elapsed=orchestrator.timer() - progress.started,
        plan_attempts=progress.plan_attempts,
        synthesis_attempts=synthesis_attempts,
        **_books(state, journal),
    )
    progress.settled = True
    await delivery.finish(RunFinished(run_id=run_id, result=result))
    # Events carry JSON (they round-trip); the caller gets structured outputs as models.
    return result.model_copy(update={"tasks": typed_outputs(results, orchestrator.registry)})


async def _cancelled(
    orchestrator: Orchestrator,
    state: RunState,
    journal: RunJournal,
    delivery: Delivery,
    progress: _Progress,
) -> RunResult:
    """The run as its cancellation left it: the tasks checkpointed so far, no answer."""
    record = await orchestrator.store.get_run(state.run_id)
    result = RunResult(
        run_id=state.run_id,
        request=state.request,
        status=RunStatus.cancelled,
        plan=record.plan,
        tasks=await orchestrator.store.load_tasks(state.run_id),
        error="cancelled (foreman cancel)",
        **_books(state, journal),
        elapsed=orchestrator.timer() - progress.started,
    )
    progress.settled = True
    await delivery.finish(RunFinished(run_id=state.run_id, result=result))
    return result


async def _over_budget(
    orchestrator: Orchestrator,
    state: RunState,
    delivery: Delivery,
    progress: _Progress,
    results: dict[str, TaskResult],
    meter: BudgetMeter,
) -> RunResult:
    """The run as its budget left it: tasks that finished keep their results, the others
    did not start (they run on resume). The answer, when any task finished, is the
    finished parts put together without a model call (``concat``): synthesis would be a
    call the budget no longer allows."""
    exc = meter.exceeded
    assert exc is not None
    plan = state.plan
    model = orchestrator.models.default  # concat calls no model
    answer, confidence = await finished_parts(state.request, plan, results, exc, model)
    if answer is not None:
        delivery.emit(Assembled(run_id=state.run_id, method="concat", answer=answer))
    result = RunResult(
        run_id=state.run_id,
        request=state.request,
        status=RunStatus.over_budget,
        plan=plan,
        tasks=results,
        answer=answer,
        confidence=confidence,
        error=str(exc),
        budget_limit=exc.limit,
        elapsed=orchestrator.timer() - progress.started,
        plan_attempts=progress.plan_attempts,
        **_books(state, delivery.journal),
    )
    progress.settled = True
    await delivery.finish(RunFinished(run_id=state.run_id, result=result))
    return result.model_copy(update={"tasks": typed_outputs(results, orchestrator.registry)})


def _books(state: RunState, journal: RunJournal) -> dict[str, Any]:
    """The run's books for its result: earlier executions plus every call of this one
    (the journal has stopped or settled them all by the time a result is built)."""
    return dict(state.before + Books.of(journal.ledger.records.values()))


def _checkpointed(
    runner: TaskRunner, delivery: Delivery, meter: BudgetMeter | None
) -> Callable[[Task, dict[str, TaskResult]], Awaitable[TaskResult]]:
    """The runner, with each settled task stored before the scheduler sees it. Once the
    budget is spent, no task starts, and one whose next call was refused stops
    unfinished (``Halt``): the scheduler lets the running ones end, then stops."""

    async def execute(task: Task, deps: dict[str, TaskResult]) -> TaskResult:
        try:
            if meter is not None:
                meter.admit()
            result = await runner(task, deps)
        except BudgetExceededError as exc:
            raise Halt(str(exc)) from None
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
