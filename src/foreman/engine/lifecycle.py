"""One execution of a run, fresh or resumed, from taking its lease to its last event.

The lifecycle is the same whatever drives the run: take the run's lease, open its journal
(checkpoints, ledger) and budget meter, hand the run to its driver (``engine.drivers``:
plan then run the DAG, or delegate turn by turn), and make sure the run ends in a state that
tells the truth. Ctrl-C marks it interrupted, so ``resume`` can continue it; ``foreman
cancel`` ends it cancelled; a budget ends it ``over_budget`` with what finished
(``foreman.ledger.budget``), and ``resume`` with a raised limit goes on from there.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from foreman.engine.budgeting import finished_parts, meter_for
from foreman.engine.delivery import Delivery
from foreman.engine.journal import RunJournal
from foreman.engine.settings import RunDeps
from foreman.errors import ForemanError
from foreman.events import Assembled, Event, RunFinished
from foreman.ledger.books import Books
from foreman.ledger.budget import Budget, BudgetMeter
from foreman.ledger.records import CallPurpose, CallRecord
from foreman.models.base import Usage
from foreman.plan.schema import Plan
from foreman.results import RunResult, RunStatus, TaskResult, confidences, typed_outputs

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
    #: The books of each nested run of this run (its subtree's ledgers), by run id; a
    #: nested run that runs again replaces its entry, so nothing is counted twice.
    nested: dict[str, Books] = field(default_factory=dict)

    def spent_before(self) -> Books:
        """What the run spent before this execution: its earlier executions' calls and
        its nested runs' (what its budget counts on from)."""
        books = self.before
        for nested in self.nested.values():
            books = books + nested
        return books


@dataclass
class Execution:
    """One execution in progress: what a driver works with, and how it ends the run.

    ``results`` fills in as tasks settle, so a failure can still report them; ``settled``
    turns true once the run's final status is stored, and nothing may overwrite it then.
    """

    deps: RunDeps
    state: RunState
    journal: RunJournal
    delivery: Delivery
    meter: BudgetMeter | None
    results: dict[str, TaskResult]
    started: float
    settled: bool = False

    @property
    def run_id(self) -> str:
        return self.state.run_id

    def emit(self, event: Event) -> None:
        self.delivery.emit(event)

    def books(self) -> dict[str, Any]:
        """The run's books for its result: earlier executions plus every call of this one
        (the journal has stopped or settled them all by the time a result is built), plus
        its nested runs'."""
        return dict(self.state.spent_before() + Books.of(self.journal.ledger.records.values()))

    def result(self, status: RunStatus, **fields: Any) -> RunResult:
        """The run's result as it stands: its plan, its tasks, its books, its time."""
        plan = fields.pop("plan", self.state.plan)
        # This execution's calls of each kind, from its ledger: whatever path ended the
        # run (a budget, a cancel, a failure), they were made.
        made = Counter(record.purpose for record in self.journal.ledger.records.values())
        fields.setdefault("plan_attempts", made[CallPurpose.plan] + made[CallPurpose.delegate])
        fields.setdefault("replan_attempts", made[CallPurpose.replan])
        return RunResult(
            run_id=self.run_id,
            request=self.state.request,
            status=status,
            plan=plan,
            tasks=fields.pop("tasks", self.results),
            elapsed=self.deps.timer() - self.started,
            **self.books(),
            **fields,
        )

    async def finish(self, result: RunResult) -> RunResult:
        """Store ``result`` as the run's final state, deliver ``run_finished``, and return
        it with structured outputs as models (events carry JSON, so they round-trip)."""
        await self._end(RunFinished(run_id=self.run_id, result=result))
        return result.model_copy(update={"tasks": typed_outputs(result.tasks, self.deps.registry)})

    async def over_budget(self) -> RunResult:
        """The run as its budget left it: tasks that finished keep their results, the others
        did not start (they run on resume). The answer, when any task finished, is the
        finished parts put together without a model call (``concat``): synthesis would be a
        call the budget no longer allows."""
        assert self.meter is not None
        exc = self.meter.settled()
        assert exc is not None
        model = self.deps.models.default  # concat calls no model
        plan = self.state.plan
        answer, confidence = await finished_parts(
            self.state.request, plan, self.results, exc, model
        )
        if answer is not None:
            self.emit(Assembled(run_id=self.run_id, method="concat", answer=answer))
        return await self.finish(
            self.result(
                RunStatus.over_budget,
                answer=answer,
                confidence=confidence,
                error=str(exc),
                budget_limit=exc.limit,
            )
        )

    async def cancelled(self) -> RunResult:
        """The run as its cancellation left it: the tasks checkpointed so far, no answer."""
        store = self.deps.store
        record = await store.get_run(self.run_id)
        result = self.result(
            RunStatus.cancelled,
            plan=record.plan,
            tasks=await store.load_tasks(self.run_id),
            error="cancelled (foreman cancel)",
        )
        await self._end(RunFinished(run_id=self.run_id, result=result))
        return result

    async def _end(self, event: RunFinished) -> None:
        """Store the run's final state and deliver its last event. ``settled`` from the
        start, so a Ctrl-C during the write never overwrites it; back to unsettled if the
        write itself failed (nothing was stored), so the run still records its failure,
        with the calls that write carried."""
        self.settled = True
        try:
            await self.delivery.finish(event)
        except Exception:
            if not self.delivery.stored:
                self.settled = False
            raise

    async def fail(self, exc: Exception) -> None:
        """Record the run as failed, with the error and what it spent, and end the stream."""
        error = str(exc) if isinstance(exc, ForemanError) else f"{type(exc).__name__}: {exc}"
        plan = self.state.plan
        confidence = confidences(plan, self.results) if plan is not None else {}
        result = self.result(RunStatus.failed, confidence=confidence, error=error)
        await self.delivery.finish(RunFinished(run_id=self.run_id, result=result), quiet=True)


async def execute(deps: RunDeps, state: RunState, on_event: OnEvent) -> RunResult:
    """Drive ``state`` to a result under the run's lease; see the module docstring.

    Whatever happens once the lease is held, the run ends in a state that tells the truth:
    Ctrl-C leaves it ``interrupted``; any error (no plan, provider down, a consumer of the
    events that raised) leaves it ``failed`` with the error and what it spent, the last
    event is ``run_finished``, and the original error is re-raised to the caller.
    """
    from foreman.engine.drivers import driver_for  # drivers build on this module

    journal = RunJournal(
        deps.store,
        state.run_id,
        spent=state.before.usage,
        keep_prompts=deps.settings.record_prompts,
        on_call=deps.observers.on_call if deps.observers else None,
        lease_seconds=deps.lease_seconds,
        started_window=deps.started_write_window,
        parent_ledger=deps.parent_ledger,
    )
    journal.ledger.count_on(state.earlier_calls)
    if deps.observers:
        on_event = deps.observers.watching(on_event)
    delivery = Delivery(journal, on_event)
    meter = meter_for(
        state.run_id,
        state.budget,
        journal.ledger,
        delivery.emit,
        before=state.spent_before(),
        seconds_before=state.seconds_before,
        timer=deps.timer,
        upstream=deps.parent_meter,
    )
    run = Execution(
        deps, state, journal, delivery, meter, results=dict(state.completed), started=deps.timer()
    )
    try:
        await journal.acquire()
    except asyncio.CancelledError:
        if journal.leased:  # taken as the Ctrl-C came: give it back; a new run ends here
            if not state.resumed:
                await asyncio.shield(journal.update(RunStatus.interrupted, error="interrupted"))
            await asyncio.shield(journal.release())
        raise
    try:
        if state.resumed:  # running again: not the status it paused or died with
            await journal.update(RunStatus.running)
        return await driver_for(deps.settings)(run)
    except (asyncio.CancelledError, KeyboardInterrupt, SystemExit) as stop:
        # A cancellation ends the run as asked (`foreman cancel`, a budget) or, like a Ctrl-C
        # raised inside the run, leaves it interrupted.
        if isinstance(stop, asyncio.CancelledError) and not run.settled:
            if journal.cancelled:  # `foreman cancel`: end here, as asked
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
                return await _or_failed(run, run.cancelled)
            if meter is not None and (limit := meter.cancelled_by) is not None:
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
                meter.exceeded = meter.exceeded or limit  # a limit of a run it is nested in

                async def over_budget() -> RunResult:
                    run.results = await deps.store.load_tasks(state.run_id)
                    return await run.over_budget()

                return await _or_failed(run, over_budget)
        if not run.settled:
            await asyncio.shield(journal.update(RunStatus.interrupted, error="interrupted"))
        raise
    except Exception as exc:
        await _record_failure(run, exc)
        raise
    finally:
        if meter is not None:
            meter.detach()
        await asyncio.shield(journal.release())


async def _or_failed(run: Execution, end: Callable[[], Awaitable[RunResult]]) -> RunResult:
    """``end()``, the run's ending after a cancellation; if that fails (its final write
    refused, say), the run records its failure, as on the main path."""
    try:
        return await end()
    except Exception as exc:
        await _record_failure(run, exc)
        raise


async def _record_failure(run: Execution, exc: Exception) -> None:
    """Record the run as failed with ``exc``, unless its final state is stored."""
    if run.settled:
        return
    try:
        await asyncio.shield(run.fail(exc))
    except Exception as also:  # the store is failing too: the first error still leads
        exc.add_note(f"Recording the run as failed failed as well: {also}")
