"""The delegating driver (``mode="delegate"``): a tool-calling orchestrator.

Instead of writing a whole plan up front, the orchestrator model gets one tool per worker
and works turn by turn: it delegates (several delegations in one turn run in parallel),
reads what the workers report, delegates again or answers. Its last text is the run's
answer. The loop is bounded by ``max_turns`` (the last turn must answer), by ``max_tasks``
delegations in all, and by the run's budget.

Each delegation is a task like any other: it goes through the ``TaskRunner`` (approval by
risk level, retries and fallbacks, the quality gate), is checkpointed before the next turn,
and joins the run's plan, which grows by one version per turn (``show`` lists it). Each
turn is a model call in the ledger with purpose ``delegate``. With a ``context_budget``,
older results reach the orchestrator as summaries once they pass it (``engine.context``);
workers still get every input in full. A resumed run finishes the
delegations its last turn left unfinished, rebuilds the conversation from its tasks
(``delegation``) and goes on: no delegation that settled is made or run again.
"""

from __future__ import annotations

from typing import Any

from foreman.engine.calls import retried
from foreman.engine.context import compactor_of
from foreman.engine.drivers.delegation import (
    Refused,
    TurnNotes,
    conversation,
    delegation_id,
    delegations,
    result_entries,
    shown_results,
    turn_of,
    worker_tools,
)
from foreman.engine.drivers.delegation_prompts import COMPACTION_GOAL, delegate_system
from foreman.engine.drivers.shared import checkpointed, run_status, task_runner
from foreman.engine.lifecycle import Execution
from foreman.engine.routing import DELEGATE_TOOL, delegate_tool, routed_calls
from foreman.engine.scheduler import run_dag
from foreman.errors import (
    BudgetExceededError,
    ForemanError,
    OutputValidationError,
    RunAbortedError,
)
from foreman.events import OrchestratorTurn, RunStarted
from foreman.ledger.records import CallPurpose, CallStatus
from foreman.models.base import ModelRequest, ModelResponse, ToolCall
from foreman.models.retry import RetryPolicy, complete_with_retry
from foreman.plan.revise import PlanChanges
from foreman.plan.schema import Plan, Task
from foreman.results import RunResult, RunStatus, confidences

#: Output tokens of one turn: a turn may be the whole final answer.
TURN_MAX_TOKENS = 4096


async def drive_delegating(run: Execution) -> RunResult:
    """Run the request by delegation until the orchestrator answers; see above."""
    deps, state = run.deps, run.state
    run.emit(RunStarted(run_id=run.run_id, request=state.request, resumed=state.resumed))
    plan = state.plan = state.plan or Plan(tasks=[])
    results = run.results
    await _settled_before(run, plan)
    runner = task_runner(run)
    execute_task = checkpointed(runner, run.delivery, run.meter, run.deps.memory)
    limits = deps.registry.concurrency_limits()
    turns = _Turns(run)
    # Turns taken before (a resume): every answered turn, also one whose calls were all
    # refused and so made no task; the limit counts them all.
    answered = sum(
        1
        for call in state.earlier_calls
        if call.purpose is CallPurpose.delegate and call.status is CallStatus.ok
    )
    turn = max([answered, *(turn_of(task.id) for task in plan.tasks)])
    try:
        while True:
            if any(task.id not in results for task in plan.tasks):
                await run_dag(
                    plan,
                    execute_task,
                    concurrency=deps.settings.concurrency,
                    worker_limits=limits,
                    results=results,
                )
                if run.meter is not None and run.meter.exceeded is not None:
                    raise run.meter.exceeded  # the delegations it let finish are kept
                if run_status(None, results) is RunStatus.waiting_approval:
                    return await _finish(run, None, None)
            turn += 1
            response = await turns.take(turn, plan)
            if not response.tool_calls:
                run.emit(_turn_event(run.run_id, turn, response, final=True))
                return await _finish(run, response.text.strip(), None)
            if turns.last(turn, plan):
                raise ForemanError(
                    f"The orchestrator ({response.model}) still delegated on its last turn "
                    f"({turn} of {deps.settings.max_turns}), so the run has no answer."
                )
            room = deps.settings.max_tasks - len(plan.tasks)
            calls = response.tool_calls
            if deps.router is not None:  # the router names each `delegate` call's worker
                calls = await _routed_within(run, calls, turn, plan, room)
            tasks, refused = delegations(calls, turn, plan, deps.registry, room)
            turns.notes[turn] = TurnNotes(response.text, refused)
            run.emit(_turn_event(run.run_id, turn, response, tasks=tasks, refused=refused))
            if tasks:
                first, plan = not plan.tasks, Plan(tasks=[*plan.tasks, *tasks])
                state.plan, usage = plan, run.journal.ledger.usage_of("delegate")
                if first:
                    await run.journal.save_plan(plan, usage)
                else:  # a version that says what it added, as a revision's does
                    added = PlanChanges(added=[task.id for task in tasks])
                    reason = f"delegated on turn {turn}"
                    await run.journal.save_revision(plan, usage, reason=reason, changes=added)
    except RunAbortedError as exc:
        if exc.result is not None:  # keep the failed task's record (its tokens are spent)
            results[exc.task_id] = exc.result
        return await _finish(run, None, str(exc))
    except BudgetExceededError:
        return await run.over_budget()


class _Turns:
    """The orchestrator's model calls: one per turn, recorded with purpose ``delegate``."""

    def __init__(self, run: Execution) -> None:
        self.run = run
        self.model = run.deps.planner()
        routed = run.deps.router is not None
        self.tools = [delegate_tool()] if routed else worker_tools(run.deps.registry)
        #: With a router, every delegation reads as a call of the one ``delegate`` tool.
        self.tool_name = DELEGATE_TOOL if routed else None
        #: What this execution's turns said beside their calls, and the calls refused.
        self.notes: dict[int, TurnNotes] = {}
        #: With a context budget: the results as last fitted to it (summaries included),
        #: so each turn compacts only what is new, not every older result again.
        self.fit = compactor_of(run)
        self.fitted: list[dict[str, Any]] = []

    def last(self, turn: int, plan: Plan) -> bool:
        """No more delegations after this turn: it must answer."""
        settings = self.run.deps.settings
        return turn >= settings.max_turns or len(plan.tasks) >= settings.max_tasks

    async def take(self, turn: int, plan: Plan) -> ModelResponse:
        run, settings = self.run, self.run.deps.settings
        last = self.last(turn, plan)
        request = ModelRequest(
            system=delegate_system(
                settings.max_turns, settings.max_tasks, last=last, routed=self.tool_name is not None
            ),
            messages=conversation(
                run.state.request,
                plan,
                run.results,
                self.notes,
                await self._shown(plan),
                tool_name=self.tool_name,
            ),
            tools=self.tools,
            tool_choice="none" if last else "auto",
            max_tokens=TURN_MAX_TOKENS,
        )
        outcome = await complete_with_retry(
            self.model,
            request,
            run.deps.retry or RetryPolicy(),
            call_timeout=run.deps.own_timeout(),
            caller="the delegating orchestrator",
            parse=_whole,
            on_retry=retried(run.emit, run.run_id, "delegate"),
            scope=run.journal.ledger.scope(CallPurpose.delegate),
        )
        if outcome.error is not None:
            raise outcome.error
        return outcome.output

    async def _shown(self, plan: Plan) -> dict[str, str] | None:
        """The compacted results' replacements, when the run has a context budget."""
        if self.fit is None:
            return None
        seen = {i for e in self.fitted for i in e.get("summary_of", [e.get("id")])}
        new = [e for e in result_entries(plan, self.run.results) if e["id"] not in seen]
        self.fitted = await self.fit([*self.fitted, *new], "delegate", COMPACTION_GOAL)
        return shown_results(self.fitted)


def _whole(response: ModelResponse) -> ModelResponse:
    """The turn as it came; one with neither delegations nor text is asked again (a
    transient error) rather than taken as the run's answer, an empty one."""
    if not response.tool_calls and not response.text.strip():
        raise OutputValidationError(
            f"{response.model} answered with neither an answer nor a delegation"
        )
    return response


async def _settled_before(run: Execution, plan: Plan) -> None:
    """On resume, the results the orchestrator has already seen stay as they were: a
    delegation of an earlier turn that failed is not run again behind its back. Those of
    the last turn that did not succeed (waiting for approval, failed, never finished) run
    again, as a planned run's would."""
    if not run.state.resumed or not plan.tasks:
        return
    last = max(turn_of(task.id) for task in plan.tasks)
    stored = await run.deps.store.load_tasks(run.run_id)
    for task_id, result in stored.items():
        if task_id not in run.results and turn_of(task_id) < last:
            run.results[task_id] = result


def _turn_event(
    run_id: str,
    turn: int,
    response: ModelResponse,
    *,
    tasks: list[Task] | None = None,
    refused: list[Refused] | None = None,
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


async def _finish(run: Execution, answer: str | None, error: str | None) -> RunResult:
    """The run's result: answered, paused for approvals, or aborted by a task."""
    plan = run.state.plan
    assert plan is not None
    status = run_status(error, run.results)
    confidence = confidences(plan, run.results)
    return await run.finish(
        run.result(status, plan=plan, answer=answer, confidence=confidence, error=error)
    )


async def _routed_within(
    run: Execution, calls: list[ToolCall], turn: int, plan: Plan, room: int
) -> list[ToolCall]:
    """``calls`` with their ``delegate`` calls routed, a batch at a time, as many as may
    still become tasks: a routed call refused (its inputs, say) leaves room for the next
    one, routed then. Calls past the limit are not routed: they are refused as such."""
    ids = [delegation_id(turn, n) for n in range(1, len(calls) + 1)]
    routed: list[ToolCall] = []
    while len(routed) < len(calls):
        accepted, _ = delegations(routed, turn, plan, run.deps.registry, room)
        need = room - len(accepted)
        if need <= 0:
            break
        start = len(routed)
        routed += await routed_calls(run, calls[start : start + need], ids[start : start + need])
    return routed + calls[len(routed) :]
