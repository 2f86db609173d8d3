"""The planned driver: plan the whole request, run the plan as a DAG, assemble.

Planning happens once (unless the run already has a plan); with a replan policy, the plan
is revised as tasks settle (``engine.replanning``) and the DAG grows while it runs. Each
settled task is checkpointed before its dependants start; assembly puts the results
together (synthesis or concatenation). A task that waits for approval pauses the run; an
``abort`` policy ends it; a stalled replanning ends it ``stalled`` with what finished.
"""

from __future__ import annotations

from foreman.engine.assembly import SYNTHESISER, assemble
from foreman.engine.calls import retried
from foreman.engine.context import compactor_of
from foreman.engine.drivers.shared import checkpointed, run_status, task_runner
from foreman.engine.expansion import ForEach
from foreman.engine.lifecycle import Execution
from foreman.engine.planning import make_plan
from foreman.engine.replanning import Replanner, stalled_parts
from foreman.engine.routing import route_plan
from foreman.engine.scheduler import DagRun
from foreman.errors import BudgetExceededError, RunAbortedError
from foreman.events import Assembled, PlanReady, RunStarted
from foreman.ledger.records import CallPurpose
from foreman.models.base import Usage
from foreman.plan.revise import PlanChanges
from foreman.plan.schema import Plan
from foreman.results import RunResult, RunStatus, confidences


async def drive_planned(run: Execution) -> RunResult:
    deps, state = run.deps, run.state
    run.emit(RunStarted(run_id=run.run_id, request=state.request, resumed=state.resumed))
    plan, plan_usage = state.plan, state.plan_usage
    try:
        if plan is None:
            plan, plan_usage = await _plan(run)
        elif await _routing_cut_short(run):
            plan = await _route_stored(run, plan)
    except BudgetExceededError:
        return await run.over_budget()
    state.plan = plan
    run.emit(PlanReady(run_id=run.run_id, plan=plan, usage=plan_usage))
    replanner = None if deps.settings.replan == "never" else Replanner(run, plan)
    error = await _run_tasks(run, plan, replanner)
    if error is None and run.meter is not None and run.meter.exceeded is not None:
        return await run.over_budget()
    plan = state.plan or plan  # the latest version, when revisions changed it
    confidence = confidences(plan, run.results)
    status, answer, synthesis_attempts = run_status(error, run.results), None, 0
    parts = run.results
    if error is None and replanner is not None and replanner.stalled is not None:
        status, error = RunStatus.stalled, f"replanning stalled: {replanner.stalled}"
        parts = stalled_parts(plan, run.results, replanner.stalled)
    if status in (RunStatus.succeeded, RunStatus.partial) or (
        status is RunStatus.stalled and any(result.succeeded for result in parts.values())
    ):
        try:
            assembly = await assemble(
                deps.settings.assembly,
                state.request,
                plan,
                parts,
                confidence,
                deps.models.default,
                retry=deps.retry,
                call_timeout=deps.own_timeout(SYNTHESISER.timeout),
                on_retry=retried(run.emit, run.run_id, "synthesis"),
                scope=run.journal.ledger.scope(CallPurpose.synthesis),
                fit=compactor_of(run),
            )
        except BudgetExceededError:
            return await run.over_budget()
        answer, synthesis_attempts = assembly.answer, assembly.attempts
        run.emit(Assembled(run_id=run.run_id, method=assembly.method, answer=answer))
    return await run.finish(
        run.result(
            status,
            plan=plan,
            answer=answer,
            confidence=confidence,
            error=error,
            synthesis_attempts=synthesis_attempts,
            replan_attempts=replanner.attempts if replanner is not None else 0,
        )
    )


async def _plan(run: Execution) -> tuple[Plan, Usage]:
    """The planner's plan, stored with what it cost (attempts cut short at their estimate)."""
    ledger = run.journal.ledger
    plan, _ = await make_plan(
        run.deps, run.run_id, run.state.request, run.emit, ledger.scope(CallPurpose.plan)
    )
    usage = ledger.usage_of("plan")
    try:
        plan = await route_plan(run, plan)  # stored routed: a resumed run never routes again
    except BudgetExceededError:  # the plan was paid for: kept, routed on resume
        await run.journal.save_plan(plan, usage)
        raise
    await run.journal.save_plan(plan, usage)
    return plan, usage


async def _routing_cut_short(run: Execution) -> bool:
    """An earlier execution began routing the stored plan (it made ``route`` calls) and
    never applied it (no ``task_routed`` event): its budget stopped it while routing, and
    the plan is stored as the planner wrote it."""
    state = run.state
    if not state.resumed or run.deps.router is None:
        return False
    if not any(call.purpose is CallPurpose.route for call in state.earlier_calls):
        return False
    events = await run.deps.store.load_events(run.run_id)
    return not any(event.get("type") == "task_routed" for event in events)


async def _route_stored(run: Execution, plan: Plan) -> Plan:
    """The stored plan routed now, as the version that says so (a plan the router
    leaves as it was is not stored again)."""
    routed = await route_plan(run, plan)
    if routed is not plan:
        moved = [new.id for old, new in zip(plan.tasks, routed.tasks, strict=True) if old != new]
        usage = run.journal.ledger.usage_of("route")
        changes = PlanChanges(changed=moved)
        await run.journal.save_revision(routed, usage, reason="routed on resume", changes=changes)
    return routed


async def _run_tasks(run: Execution, plan: Plan, replanner: Replanner | None) -> str | None:
    """Run the plan's DAG (revised as it runs, with a ``replanner``); the abort's error, if
    a task's failure policy aborted the run."""
    deps = run.deps
    runner = task_runner(run, hints=replanner is not None)
    for_each = ForEach(run.run_id, run.delivery, deps.registry)
    execute = for_each.wrap(
        checkpointed(runner, run.delivery, run.meter, run.deps.memory, for_each.stored)
    )
    try:
        dag = DagRun(
            plan.tasks,
            replanner.around(execute) if replanner is not None else execute,
            concurrency=deps.settings.concurrency,
            worker_limits=deps.registry.concurrency_limits(),
            results=run.results,
        )
        for_each.attach(dag)
        if replanner is not None:
            await replanner.attach(dag, for_each.grown)
        await dag.wait()
    except RunAbortedError as exc:
        if exc.result is not None:  # keep the failed task's record (its tokens are spent)
            run.results[exc.task_id] = exc.result
        return str(exc)
    finally:
        if replanner is not None:
            await replanner.close()
    if replanner is not None and replanner.error is not None:
        raise replanner.error
    return None
