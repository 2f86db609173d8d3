"""Replaying one task: its worker run again on the task's recorded input, for debugging.

The run stays as it was; the replay's calls join its ledger (they were paid for) with
purpose ``replay``. The worker's current definition is used, which is the point: change a
prompt, replay, compare.
"""

from __future__ import annotations

import asyncio

from foreman.engine.calls import call_worker, timeout_for
from foreman.engine.nesting import child_run_id
from foreman.engine.resuming import carry_over
from foreman.engine.settings import RunDeps
from foreman.errors import ForemanError, RunLockedError
from foreman.ledger.recorder import CallLedger
from foreman.ledger.records import CallPurpose
from foreman.plan.foreach import made_task
from foreman.results import RunStatus, TaskResult, TaskStatus, typed_outputs
from foreman.workers.nested import TeamWorker


async def replay_task(
    deps: RunDeps, run_id: str, task_id: str, *, model: str | None = None
) -> TaskResult:
    """Task ``task_id`` of run ``run_id`` run again (on ``model``, if given); see
    ``Orchestrator.replay``."""
    record = await deps.store.get_run(run_id)
    if record.status is RunStatus.running:  # its books are being kept by its execution
        raise RunLockedError(
            f"Run {run_id} is running right now; replay its tasks once it has stopped "
            "(its books would not add up: that execution counts only its own calls)."
        )
    tasks = await deps.store.load_tasks(run_id)
    task = made_task(record.plan, task_id, tasks)
    if task is None:
        ids = [known.id for known in record.plan.tasks] if record.plan else []
        raise ForemanError(f"Run {run_id} has no task {task_id!r}; its tasks: {ids}.")
    if task.for_each:
        raise ForemanError(
            f"Task {task_id!r} of run {run_id} runs once per item and calls no model "
            f"itself; replay one of its items ({task_id}.1, {task_id}.2, ...)."
        )
    recorded = tasks.get(task_id)
    # A task waiting for approval, or rejected, has its input recorded but never ran:
    # replaying it would execute a risky task nobody approved.
    if recorded is None or recorded.input is None or recorded.attempts == 0:
        why = f" ({recorded.status.value})" if recorded is not None else ""
        raise ForemanError(
            f"Task {task_id!r} of run {run_id} never ran{why}, so there is nothing to "
            f"replay. `foreman resume {run_id}` runs it."
        )
    worker = deps.registry.get(task.worker)
    if isinstance(worker, TeamWorker):
        raise ForemanError(
            f"Task {task_id!r} of run {run_id} was carried out by a nested run "
            f"({child_run_id(run_id, task_id)}); replay one of its tasks instead."
        )
    ledger = CallLedger(
        run_id, keep_prompts=deps.settings.record_prompts, on_end=deps.observers.on_call
    )
    if not record.calls:  # stored before the ledger: its totals join it first
        await carry_over(deps.store, record, tasks)
    ledger.count_on(await deps.store.list_calls(run_id=run_id, task_id=task_id))
    try:
        outcome = await call_worker(
            worker,
            [await deps.models.aget(model or worker.model)],  # built off the loop
            worker.system_prompt,
            recorded.input,
            output_schema=worker.output_schema,
            call_timeout=timeout_for(worker, deps.settings.timeout),
            scope=ledger.scope(CallPurpose.replay, task_id=task_id, worker=worker.name),
        )
    finally:  # replays are spent too, also one cut short (its input, estimated)
        ledger.interrupt_open()
        await asyncio.shield(deps.store.save_calls(run_id, ledger.take()))
    result = TaskResult(
        task_id=task_id,
        worker=worker.name,
        status=TaskStatus.failed if outcome.error else TaskStatus.succeeded,
        output=outcome.output,
        error=str(outcome.error) if outcome.error else None,
        attempts=outcome.attempts,
        usage=outcome.usage,
        model=outcome.model,
        input=recorded.input,
    )
    return typed_outputs({task_id: result}, deps.registry)[task_id]
