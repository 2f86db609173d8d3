"""Nested runs: a task whose worker is a team (``TeamWorker``) runs as a run of its own.

The nested run is a real run in the parent's store, linked to the parent's run and task
(``RunRecord.parent_run_id``, ``parent_task_id``). Its id is the parent's run id and the
task id (``child_run_id``), so a resumed parent finds it and continues it where it was,
never starting it over. Its events reach the parent's stream wrapped in ``NestedEvent``
(tagged with the parent's run and task); what it spent is the parent task's usage and part
of the parent's books (its subtree's ledgers: ``docs/books.md``). A nested run that waits
for an approval leaves the parent task ``waiting``, so the parent pauses too; one that
fails fails the parent task, its error naming the nested run and task that failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from foreman.engine.lifecycle import Execution
from foreman.engine.settings import RunDeps
from foreman.engine.tasks import failed_task
from foreman.errors import ForemanError
from foreman.events import Event, NestedEvent, TaskFinished, TaskStarted
from foreman.ledger.books import Books
from foreman.ledger.budget import Budget, BudgetMeter
from foreman.ledger.recorder import CallLedger
from foreman.plan.schema import Task
from foreman.results import RunResult, RunStatus, TaskResult, TaskStatus
from foreman.store.base import RunRecord, Store
from foreman.workers.nested import PlannedTeam, Team, TeamFile, TeamWorker
from foreman.workers.registry import Registry

if TYPE_CHECKING:
    from foreman.engine.orchestrator import Orchestrator
    from foreman.models.pool import ModelPool

OnEvent = Callable[[Event], None]


def child_run_id(parent_run_id: str, task_id: str) -> str:
    """The id of the run that carries out ``task_id`` of ``parent_run_id``: the same on
    every execution of the parent, which is how a resumed parent finds it."""
    return f"{parent_run_id}.{task_id}"


@dataclass(frozen=True, slots=True)
class ChildRun:
    """What a ``Team`` needs to carry out a parent's task as a nested run."""

    #: The nested run's id (``child_run_id``) and what it is asked.
    run_id: str
    request: str
    parent_run_id: str
    parent_task_id: str
    #: 1 for a run nested in a top-level run; never above ``parent.settings.max_depth``.
    depth: int
    #: The parent's execution: its store (the nested run's too), models, approval policy.
    parent: RunDeps
    #: Where the nested run's events go: the parent's stream, wrapped.
    on_event: OnEvent
    #: With a parent's budget: its ``on_limit``, and no limits of its own. The parent's
    #: limits hold through ``meter`` as the nested run spends (a share fixed at its start
    #: would count what the parent spent in flight as estimated, and on resume count the
    #: nested run's earlier calls twice); the team's own budget narrows them.
    budget: Budget | None = None
    #: The parent's budget meter: the nested run's spending counts there as it happens.
    meter: BudgetMeter | None = None
    #: The parent's ledger: a parent stopped on purpose stops the nested run's calls so.
    ledger: CallLedger | None = None

    @property
    def store(self) -> Store:
        return self.parent.store

    def record(self, settings: dict[str, Any]) -> RunRecord:
        """The nested run's record as first stored, linked to its parent."""
        return RunRecord(
            run_id=self.run_id,
            request=self.request,
            settings=settings,
            parent_run_id=self.parent_run_id,
            parent_task_id=self.parent_task_id,
        )


def child_request(task: Task, inputs: dict[str, Any]) -> str:
    """What a nested run is asked: the task's instructions, then its inputs (and args) as
    JSON when it has any; the same on every execution, like a worker's input."""
    extra = {"inputs": inputs} if inputs else {}
    if task.args is not None:
        extra["args"] = task.args
    if not extra:
        return task.instructions
    return f"{task.instructions}\n\n{json.dumps(extra, ensure_ascii=False, default=str)}"


async def subtree_books(store: Store, run_id: str) -> Books:
    """What a run and every run nested in it spent, from their ledgers."""
    return Books.of(await store.list_calls(run_id=run_id, descendants=True))


async def nested_books(store: Store, run_id: str) -> dict[str, Books]:
    """The books of each nested run of ``run_id``, for a resumed execution's result."""
    return {
        child.run_id: await subtree_books(store, child.run_id)
        for child in await store.child_runs(run_id)
    }


async def stored_result(store: Store, record: RunRecord) -> RunResult:
    """A run that ended (or was cancelled) as its result, read back from the store."""
    return RunResult(
        run_id=record.run_id,
        request=record.request,
        status=record.status,
        plan=record.plan,
        tasks=await store.load_tasks(record.run_id),
        answer=record.answer,
        error=record.error,
        usage=record.usage,
        cost_usd=record.cost_usd,
        unpriced=record.unpriced,
        calls=record.calls,
    )


class NestedTasks:
    """Runs the tasks of one execution whose worker is a team (``TaskRunner``'s hook).

    ``books`` is the execution's ``RunState.nested``: each nested run's books are put
    there once it stops, whatever way it stopped.
    """

    def __init__(
        self,
        deps: RunDeps,
        run_id: str,
        emit: OnEvent,
        forward: OnEvent,
        books: dict[str, Books],
        meter: BudgetMeter | None = None,
        ledger: CallLedger | None = None,
    ) -> None:
        self.deps = deps
        self.run_id = run_id
        self.emit = emit  # the parent's own events (recorded with its run)
        self.forward = forward  # the parent's consumer, for the nested run's events
        self.books = books
        self.meter = meter  # the parent's budget, charged with what nested runs spend
        self.ledger = ledger  # the parent's ledger

    async def __call__(
        self, task: Task, worker: TeamWorker, inputs: dict[str, Any], missing: list[str], user: str
    ) -> TaskResult:
        self.emit(TaskStarted(run_id=self.run_id, task_id=task.id, worker=worker.name))
        started = time.perf_counter()
        child_id = child_run_id(self.run_id, task.id)
        depth = self.deps.depth + 1
        limit = self.deps.settings.max_depth
        if depth > limit:
            error = (
                f"team {worker.name!r} would run nested {depth} deep, past the limit of "
                f"{limit} (max_depth)"
            )
            return self._failed(task, worker, error, Books(), missing, user, started)
        troubles: list[BaseException] = []
        child = ChildRun(
            run_id=child_id,
            request=child_request(task, inputs),
            parent_run_id=self.run_id,
            parent_task_id=task.id,
            depth=depth,
            parent=self.deps,
            on_event=self._forwarding(task.id, child_id, depth, troubles),
            budget=Budget(on_limit=self.meter.budget.on_limit) if self.meter else None,
            meter=self.meter,
            ledger=self.ledger,
        )
        spent_before = self.books.get(child_id, Books())
        result, error = None, None
        try:
            result = await run_team(worker.team, child, worker)
        except Exception as exc:  # the nested run is recorded as failed, with its error
            error = f"nested run {child_id} failed: {exc}"
        except asyncio.CancelledError:  # stopped with its parent: interrupted, or cancelled
            await asyncio.shield(self._cancel_with_parent(child_id))
            raise
        finally:
            books = await asyncio.shield(subtree_books(self.deps.store, child_id))
            self.books[child_id] = books
            if self.meter is not None:
                self.meter.settle_nested(child_id, spent_before, books)
        if troubles:  # the parent's consumer raised: the parent fails, as it would directly
            raise troubles[0]
        if result is not None and result.status is RunStatus.over_budget and self.meter:
            self.meter.admit()  # the parent's budget stopped it: the parent stops, unfinished
        if result is not None:
            error = failure_of(result)
        if error is not None:
            return self._failed(task, worker, error, books, missing, user, started)
        assert result is not None
        if result.status is RunStatus.waiting_approval:
            return TaskResult(  # what the nested run spent so far is on the task already
                task_id=task.id,
                worker=worker.name,
                status=TaskStatus.waiting,
                attempts=books.calls,
                usage=books.usage,
                input=user,
            )
        done = TaskResult(
            task_id=task.id,
            worker=worker.name,
            status=TaskStatus.succeeded,
            output=result.answer,
            attempts=books.calls,
            usage=books.usage,
            latency=time.perf_counter() - started,
            unreviewed=partial_note(result),
            missing_inputs=missing,
            input=user,
        )
        self.emit(TaskFinished.of(self.run_id, done))
        return done

    async def _cancel_with_parent(self, child_id: str) -> None:
        """A parent cancelled (``foreman cancel``, of it or of any run above it) cancels
        its nested run too, which its cancellation left ``interrupted``: nothing is left
        to resume. Asked of every run above that is running (a cancel asked of a run that
        ended since is no cancel of this one): a run in the middle learns of the cancel of
        the top only once its own nested run has stopped."""
        store = self.deps.store
        with contextlib.suppress(ForemanError):
            above: str | None = self.run_id
            while above is not None:
                record = await store.get_run(above)
                if record.status is RunStatus.running and await store.cancel_requested(above):
                    await store.cancel_run(child_id)
                    return
                above = record.parent_run_id

    def _forwarding(
        self, task_id: str, child_id: str, depth: int, troubles: list[BaseException]
    ) -> OnEvent:
        def forward(event: Event) -> None:
            try:
                self.forward(
                    NestedEvent(
                        run_id=self.run_id,
                        task_id=task_id,
                        child_run_id=child_id,
                        depth=depth,
                        event=event,
                    )
                )
            except Exception as exc:
                troubles.append(exc)
                raise

        return forward

    def _failed(
        self,
        task: Task,
        worker: TeamWorker,
        error: str,
        books: Books,
        missing: list[str],
        user: str,
        started: float,
    ) -> TaskResult:
        latency = time.perf_counter() - started
        return failed_task(
            self.emit, self.run_id, task, worker, error, books.calls, books.usage, latency,
            missing=missing, user=user,
        )  # fmt: skip


def nested_tasks(run: Execution) -> NestedTasks:
    """The hook that runs ``run``'s team tasks as nested runs (any driver's ``TaskRunner``):
    their events go to the run's consumer, their books into ``run.state.nested``."""
    return NestedTasks(
        run.deps,
        run.run_id,
        run.emit,
        run.delivery.on_event,
        run.state.nested,
        run.meter,
        run.journal.ledger,
    )


async def run_team(
    team: Team | PlannedTeam | TeamFile, child: ChildRun, worker: TeamWorker
) -> RunResult:
    """Carry out ``child`` with ``team``: a ``Team`` runs it itself; the team of a team
    file, or a planned team (a pattern) with its plan, runs under the parent's settings."""
    if isinstance(team, Team):
        return await team.run_child(child)
    if isinstance(team, TeamFile):
        return await child_orchestrator(child, team.registry, worker, team.path).run_child(child)
    registry = Registry(team.workers())
    plan = team.plan_for(child.request)
    return await child_orchestrator(child, registry, worker).run_child(child, plan=plan)


def child_orchestrator(
    child: ChildRun, registry: Registry, worker: TeamWorker, path: Path | None = None
) -> Orchestrator:
    """An orchestrator for ``registry`` configured as the parent is (its models shared,
    its default model the worker's ``model`` if set), with the team's budget if it has
    one; ``path``: the team file it was read from, recorded with the nested run."""
    from foreman.engine.orchestrator import Orchestrator  # it builds on this module

    parent = child.parent.settings
    names = set(registry.names())
    settings = parent.model_copy(
        update={
            "team": str(path) if path is not None else None,
            "model": worker.model or child.parent.models.default_name,
            "budget": registry.budget,
            # Settings that name one of the parent's workers hold where the team has it.
            "validator": parent.validator if parent.validator in names else None,
            "router_fallback": (
                parent.router_fallback if parent.router_fallback in names else None
            ),
        }
    )
    return Orchestrator.from_settings(
        settings,
        registry,
        store=child.store,
        models=child.parent.models.known(),
        observers=child.parent.observers.observers,
    )


def team_model_names(registry: Registry, models: ModelPool) -> list[str]:
    """The models the teams among ``registry``'s workers may call, as far as they can be
    known before a run: an orchestrator's own, a team file's or a pattern's workers' (on
    the team worker's model, else the parent's default, when they name none; a team file
    in a team file too). A custom ``Team`` keeps its models to itself."""
    from foreman.engine.orchestrator import Orchestrator  # it builds on this module

    names: list[str] = []
    for worker in registry:
        if not isinstance(worker, TeamWorker):
            continue
        team = worker.team
        if isinstance(team, Orchestrator):
            names += team.model_names
            continue
        if isinstance(team, TeamFile):
            members = list(team.registry)
            names += team_model_names(team.registry, models)
        elif isinstance(team, PlannedTeam):
            members = team.workers()
        else:
            continue
        for member in members:
            names.append(models.get(member.model or worker.model).name)
            if member.fallback_model is not None:
                names.append(models.get(member.fallback_model).name)
    return names


def failure_of(result: RunResult) -> str | None:
    """Why a nested run that ended this way is a failure of its parent's task; ``None``
    when it answered (or waits for an approval). The error names the nested run and,
    when one is to blame, its task."""
    if result.status in (RunStatus.succeeded, RunStatus.partial, RunStatus.waiting_approval):
        return None
    failed = [t for t in result.tasks.values() if t.status is TaskStatus.failed]
    why = f"nested run {result.run_id} {result.status.value}: {result.error or 'no answer'}"
    if not failed:  # cancelled, say, with no task to blame
        return why
    return why + f" (task {failed[0].task_id}, worker {failed[0].worker}: {failed[0].error})"


def partial_note(result: RunResult) -> str | None:
    """For a nested run that answered with some of its tasks missing: which ones, so the
    parent's confidence in the task drops and ``show`` says why."""
    if result.status is not RunStatus.partial:
        return None
    missing = [t.task_id for t in result.tasks.values() if not t.succeeded]
    return f"nested run {result.run_id} is partial: {', '.join(missing)} did not succeed"
