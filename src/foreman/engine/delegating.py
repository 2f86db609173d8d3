"""The delegating driver (``mode="delegate"``): a tool-calling orchestrator.

Instead of writing a whole plan up front, the orchestrator model gets one tool per worker
and works turn by turn: it delegates (several delegations in one turn run in parallel),
reads what the workers report, delegates again or answers. Its last text is the run's
answer. The loop is bounded by ``max_turns`` (the last turn must answer), by ``max_tasks``
delegations in all, and by the run's budget.

Each delegation is a task like any other: it goes through the ``TaskRunner`` (approval by
risk level, retries and fallbacks, the quality gate), is checkpointed before the next turn,
and joins the run's plan, which grows by one version per turn (``show`` lists it). Each
turn is a model call in the ledger with purpose ``delegate``. A resumed run finishes the
delegations its last turn left unfinished, rebuilds the conversation from its tasks
(``engine.delegation``) and goes on: no delegation that settled is made or run again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from foreman.engine.approvals import ApprovalGate
from foreman.engine.calls import retried
from foreman.engine.delegation import (
    TurnNotes,
    conversation,
    delegations,
    turn_of,
    worker_tools,
)
from foreman.engine.delegation_prompts import delegate_system
from foreman.engine.execution import (
    RunState,
    _books,
    _checkpointed,
    _over_budget,
    _Progress,
    _status,
)
from foreman.engine.results import RunResult, RunStatus, TaskResult, confidences, typed_outputs
from foreman.engine.scheduler import run_dag
from foreman.engine.tasks import TaskRunner
from foreman.errors import BudgetExceededError, ForemanError, RunAbortedError
from foreman.events import OrchestratorTurn, RunFinished, RunStarted
from foreman.ledger.records import CallPurpose
from foreman.models.base import Model, ModelRequest, ModelResponse
from foreman.models.retry import RetryPolicy, complete_with_retry
from foreman.plan.schema import Plan

if TYPE_CHECKING:
    from foreman.engine.delivery import Delivery
    from foreman.engine.journal import RunJournal
    from foreman.engine.orchestrator import Orchestrator
    from foreman.ledger.budget import BudgetMeter

#: Output tokens of one turn: a turn may be the whole final answer.
TURN_MAX_TOKENS = 4096


async def drive_delegating(
    orchestrator: Orchestrator,
    state: RunState,
    journal: RunJournal,
    delivery: Delivery,
    progress: _Progress,
    meter: BudgetMeter | None,
) -> RunResult:
    """Run ``state``'s request by delegation until the orchestrator answers; see above."""
    emit = delivery.emit
    run_id = state.run_id
    emit(RunStarted(run_id=run_id, request=state.request, resumed=state.resumed))
    plan = state.plan = state.plan or Plan(tasks=[])
    results = progress.results
    await _settled_before(orchestrator, state, plan, results)
    execute_task = _checkpointed(
        TaskRunner(
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
        ),
        delivery,
        meter,
    )
    limits = {w.name: w.max_concurrency for w in orchestrator.registry if w.max_concurrency}
    turns = _Turns(orchestrator, state, journal, progress, emit)
    turn = max((turn_of(task.id) for task in plan.tasks), default=0)
    try:
        while True:
            if any(task.id not in results for task in plan.tasks):
                await run_dag(
                    plan,
                    execute_task,
                    concurrency=orchestrator.concurrency,
                    worker_limits=limits,
                    results=results,
                )
                if meter is not None and meter.exceeded is not None:
                    raise meter.exceeded  # the delegations it let finish are kept
                if _status(None, results) is RunStatus.waiting_approval:
                    return await _finish(orchestrator, state, delivery, progress, None, None)
            turn += 1
            response = await turns.take(turn, plan, results)
            if not response.tool_calls:
                answer = response.text.strip()
                emit(_turn_event(run_id, turn, response, final=True))
                return await _finish(orchestrator, state, delivery, progress, answer, None)
            if turns.last(turn, plan):
                raise ForemanError(
                    f"The orchestrator ({response.model}) still delegated on its last turn "
                    f"({turn} of {orchestrator.max_turns}), so the run has no answer."
                )
            room = orchestrator.max_tasks - len(plan.tasks)
            tasks, refused = delegations(
                response.tool_calls, turn, plan, orchestrator.registry, room
            )
            turns.notes[turn] = TurnNotes(response.text, refused)
            emit(_turn_event(run_id, turn, response, tasks=tasks, refused=refused))
            if tasks:
                plan = state.plan = Plan(tasks=[*plan.tasks, *tasks])
                await journal.save_plan(plan, journal.ledger.usage_of("delegate"))
    except RunAbortedError as exc:
        if exc.result is not None:  # keep the failed task's record (its tokens are spent)
            results[exc.task_id] = exc.result
        return await _finish(orchestrator, state, delivery, progress, None, str(exc))
    except BudgetExceededError:
        assert meter is not None
        return await _over_budget(orchestrator, state, delivery, progress, results, meter)


class _Turns:
    """The orchestrator's model calls: one per turn, recorded with purpose ``delegate``."""

    def __init__(
        self,
        orchestrator: Orchestrator,
        state: RunState,
        journal: RunJournal,
        progress: _Progress,
        emit: Callable[[Any], None],
    ) -> None:
        model = orchestrator.planner_model
        self.model = model if isinstance(model, Model) else orchestrator.models.get(model)
        self.orchestrator = orchestrator
        self.state = state
        self.journal = journal
        self.progress = progress
        self.emit = emit
        self.tools = worker_tools(orchestrator.registry)
        #: What this execution's turns said beside their calls, and the calls refused.
        self.notes: dict[int, TurnNotes] = {}

    def last(self, turn: int, plan: Plan) -> bool:
        """No more delegations after this turn: it must answer."""
        orchestrator = self.orchestrator
        return turn >= orchestrator.max_turns or len(plan.tasks) >= orchestrator.max_tasks

    async def take(self, turn: int, plan: Plan, results: dict[str, TaskResult]) -> ModelResponse:
        orchestrator = self.orchestrator
        last = self.last(turn, plan)
        request = ModelRequest(
            system=delegate_system(orchestrator.max_turns, orchestrator.max_tasks, last=last),
            messages=conversation(self.state.request, plan, results, self.notes),
            tools=self.tools,
            tool_choice="none" if last else "auto",
            max_tokens=TURN_MAX_TOKENS,
        )
        outcome = await complete_with_retry(
            self.model,
            request,
            orchestrator.retry or RetryPolicy(),
            call_timeout=orchestrator.own_timeout(),
            caller="the delegating orchestrator",
            parse=_whole,
            on_retry=retried(self.emit, self.state.run_id, "delegate"),
            scope=self.journal.ledger.scope(CallPurpose.delegate),
        )
        self.progress.plan_attempts += outcome.attempts
        if outcome.error is not None:
            raise outcome.error
        return outcome.output


def _whole(response: ModelResponse) -> ModelResponse:
    return response


async def _settled_before(
    orchestrator: Orchestrator, state: RunState, plan: Plan, results: dict[str, TaskResult]
) -> None:
    """On resume, the results the orchestrator has already seen stay as they were: a
    delegation of an earlier turn that failed is not run again behind its back. Those of
    the last turn that did not succeed (waiting for approval, failed, never finished) run
    again, as a planned run's would."""
    if not state.resumed or not plan.tasks:
        return
    last = max(turn_of(task.id) for task in plan.tasks)
    stored = await orchestrator.store.load_tasks(state.run_id)
    for task_id, result in stored.items():
        if task_id not in results and turn_of(task_id) < last:
            results[task_id] = result


def _turn_event(
    run_id: str,
    turn: int,
    response: ModelResponse,
    *,
    tasks: list | None = None,
    refused: list | None = None,
    final: bool = False,
) -> OrchestratorTurn:
    return OrchestratorTurn(
        run_id=run_id,
        turn=turn,
        text=response.text,
        delegations=tasks or [],
        refused=[f"{r.call.id} ({r.call.name}): {r.reason}" for r in refused or []],
        final=final,
        usage=response.usage,
    )


async def _finish(
    orchestrator: Orchestrator,
    state: RunState,
    delivery: Delivery,
    progress: _Progress,
    answer: str | None,
    error: str | None,
) -> RunResult:
    """The run's result: answered, paused for approvals, or aborted by a task."""
    plan = state.plan
    assert plan is not None
    results = progress.results
    result = RunResult(
        run_id=state.run_id,
        request=state.request,
        status=_status(error, results),
        plan=plan,
        tasks=results,
        answer=answer,
        confidence=confidences(plan, results),
        error=error,
        elapsed=orchestrator.timer() - progress.started,
        plan_attempts=progress.plan_attempts,
        **_books(state, delivery.journal),
    )
    progress.settled = True
    await delivery.finish(RunFinished(run_id=state.run_id, result=result))
    return result.model_copy(update={"tasks": typed_outputs(results, orchestrator.registry)})
