"""What every driver does the same way: build the task runner, run a task with its
checkpoint stored before the scheduler sees it (and the budget checked before it starts),
and read the run's status from its tasks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from foreman.engine.approvals import ApprovalGate
from foreman.engine.delivery import Delivery
from foreman.engine.lifecycle import Execution
from foreman.engine.memory import Memory, memory_input
from foreman.engine.nesting import nested_tasks
from foreman.engine.scheduler import Halt
from foreman.engine.tasks import Recall, TaskRunner
from foreman.engine.tooling import tool_journal
from foreman.errors import BudgetExceededError, RunAbortedError
from foreman.ledger.budget import BudgetMeter
from foreman.plan.schema import Task
from foreman.results import RunStatus, TaskResult, TaskStatus


def task_runner(run: Execution, *, hints: bool = False) -> TaskRunner:
    """The run's task runner: its team and models, approvals, quality gate, ledger, and
    team tasks run as nested runs. ``hints``: workers are told how to ask for a replan."""
    deps = run.deps
    return TaskRunner(
        run.run_id,
        deps.registry,
        deps.models,
        run.emit,
        validator=deps.validator,
        max_revisions=deps.settings.max_revisions,
        gate=ApprovalGate(
            deps.store,
            run.emit,
            deps.approve,
            deps.auto_approve,
            admit=run.meter.admit if run.meter is not None else None,
        ),
        timeout=deps.settings.timeout,
        ledger=run.journal.ledger,
        hints=hints,
        nested=nested_tasks(run),
        recall=_recall(run),
        tool_journal=tool_journal(run.journal),
    )


def _recall(run: Execution) -> Recall | None:
    """With memory on: a task's relevant memories, for its input."""
    memory = run.deps.memory
    if memory is None:
        return None

    async def recall(task: Task) -> dict[str, Any] | None:
        shown = await memory.recall_for(run.run_id, task)
        return memory_input(shown) if shown else None

    return recall


def checkpointed(
    runner: TaskRunner,
    delivery: Delivery,
    meter: BudgetMeter | None,
    memory: Memory | None = None,
    on_stored: Callable[[TaskResult], None] | None = None,
) -> Callable[[Task, dict[str, TaskResult]], Awaitable[TaskResult]]:
    """The runner, with each settled task stored before the scheduler sees it. Once the
    budget is spent, no task starts, and one whose next call was refused stops
    unfinished (``Halt``): the scheduler lets the running ones end, then stops.
    ``on_stored`` hears each result once checkpointed. With ``memory``, a task that
    succeeded is remembered once checkpointed."""

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
        if on_stored is not None:
            on_stored(result)
        if memory is not None and result.succeeded:
            await memory.keep(runner.run_id, result)
        return result

    return execute


def run_status(error: str | None, results: dict[str, TaskResult]) -> RunStatus:
    """The run's status from its tasks: ``error`` (an abort) first, then any task waiting
    for approval, then whether every task succeeded."""
    if error is not None:
        return RunStatus.aborted
    if any(result.status is TaskStatus.waiting for result in results.values()):
        return RunStatus.waiting_approval
    if all(result.succeeded for result in results.values()):
        return RunStatus.succeeded
    return RunStatus.partial
