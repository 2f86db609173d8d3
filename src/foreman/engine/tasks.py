"""Running one task: inputs from dependencies, failure policies, fallbacks, quality gate.

Data flows one way. A task sees its instructions and its dependencies' outputs (or an
explicit missing-input marker), never the run's history; what it returns is a
``TaskResult`` record, never shared state.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from foreman.engine.approvals import ApprovalGate
from foreman.engine.calls import CallOutcome, OnFallback, call_worker, retried, timeout_for
from foreman.engine.prompts import REVIEW_SUFFIX, Verdict, review_input, worker_input
from foreman.engine.replan_prompts import HINT_SUFFIX, replan_hint
from foreman.engine.tooling import ApprovalPending, ToolJournal, ToolLoop, allowed_tools
from foreman.errors import ModelError, RunAbortedError
from foreman.events import (
    TaskFailed,
    TaskFallback,
    TaskFinished,
    TaskRetried,
    TaskSkipped,
    TaskStarted,
    TaskValidated,
)
from foreman.ledger.recorder import CallLedger
from foreman.ledger.records import CallPurpose
from foreman.models.base import Usage
from foreman.models.pool import ModelPool
from foreman.models.retry import CallLog, OnRetry
from foreman.plan.schema import DEFAULT_ROUNDS, Task
from foreman.results import TaskResult, TaskStatus
from foreman.workers.nested import TeamWorker
from foreman.workers.registry import Registry
from foreman.workers.spec import Worker

Emit = Callable[[Any], None]
#: A task's relevant memories, as its input shows them (``None``: none worth showing).
Recall = Callable[[Task], Awaitable[dict[str, Any] | None]]
#: Runs a team's task as a nested run: (task, worker, inputs, missing inputs, input).
NestedRunner = Callable[[Task, TeamWorker, dict[str, Any], list[str], str], Awaitable[TaskResult]]


class TaskRunner:
    """Executes tasks for one run; the scheduler calls it once per task."""

    def __init__(
        self,
        run_id: str,
        registry: Registry,
        models: ModelPool,
        emit: Emit,
        *,
        validator: Worker | None = None,
        max_revisions: int = 1,
        gate: ApprovalGate | None = None,
        timeout: float | None = None,
        ledger: CallLedger | None = None,
        hints: bool = False,
        nested: NestedRunner | None = None,
        recall: Recall | None = None,
        tool_journal: ToolJournal | None = None,
    ) -> None:
        self.run_id = run_id
        self.registry = registry
        self.models = models
        self.emit = emit
        self.validator = validator
        self.max_revisions = max_revisions
        self.gate = gate
        #: The orchestrator's call timeout, for workers that set none of their own.
        self.timeout = timeout
        #: Where every call attempt is recorded; a task's tokens are the sum of its calls.
        self.ledger = ledger if ledger is not None else CallLedger(run_id)
        #: The run replans: text workers are told how to ask for it (``replan_prompts``).
        self.hints = hints
        #: Runs the tasks of teams (``TeamWorker``) as nested runs (``engine.nesting``).
        self.nested = nested
        #: With memory on: the ``memories`` entry of a task's input (``engine.memory``).
        self.recall = recall
        #: Where tool loops are checkpointed, so resume never repeats a tool call.
        self.tool_journal = tool_journal
        #: task -> (tool loops started, tool calls numbered) in its current execution
        self._loops: dict[str, tuple[int, int]] = {}
        self._warned: set[tuple[str, str]] = set()  # allow-list entries matching no tool
        #: worker name -> (the worker, its models) (``_models_of``)
        self._models: dict[str, tuple[Worker, list]] = {}

    async def __call__(self, task: Task, deps: dict[str, TaskResult]) -> TaskResult:
        worker = self.registry.get(task.worker)
        # Without inputs, no comprehensions (two function objects a task in a fan-out).
        missing = [dep for dep, result in deps.items() if not result.succeeded] if deps else []
        if missing and worker.missing_inputs == "skip":
            reason = f"input {', '.join(missing)} missing and the worker skips on missing input"
            self.emit(TaskSkipped(run_id=self.run_id, task_id=task.id, reason=reason))
            return TaskResult(
                task_id=task.id,
                worker=worker.name,
                status=TaskStatus.skipped,
                error=reason,
                missing_inputs=missing,
            )
        inputs = {dep: _as_input(result) for dep, result in deps.items()} if deps else {}
        memories = await self.recall(task) if self.recall is not None else None
        user = worker_input(task.instructions, inputs, task.args, memories=memories)
        if self.gate is not None and self.gate.needs_approval(worker):
            decision = await self.gate.check(self.run_id, task, worker, user)
            if decision.verdict == "wait":
                return TaskResult(
                    task_id=task.id, worker=worker.name, status=TaskStatus.waiting, input=user
                )
            if decision.verdict == "reject":
                rejected = CallOutcome()
                return self._failed(task, worker, str(decision.reason), rejected, missing, user, 0)
        if isinstance(worker, TeamWorker):  # a whole team: its task is a nested run
            if self.nested is None:
                why = "this kind of run cannot run a team as a worker"
                return self._failed(task, worker, why, CallOutcome(), missing, user, 0)
            return await self.nested(task, worker, inputs, missing, user)
        self.emit(TaskStarted(run_id=self.run_id, task_id=task.id, worker=worker.name))
        started = time.perf_counter()
        self._loops[task.id] = (0, 0)
        try:
            if worker.fallback is None:  # one coroutine less on the usual way
                outcome = await self._call(task, worker, user)
            else:
                outcome = await self._produce(task, worker, user)
            if outcome.error is not None:
                latency = time.perf_counter() - started
                error = str(outcome.error)
                return self._failed(task, worker, error, outcome, missing, user, latency)
            gate = self._gate_of(task, worker)
            approved, revisions, reviews, unreviewed = (
                await self._quality_gate(task, worker, inputs, outcome, gate)
                if gate is not None
                else _UNREVIEWED
            )
        except ApprovalPending as pending:  # a tool call waits: resume continues the loop
            return TaskResult(
                task_id=task.id,
                worker=worker.name,
                status=TaskStatus.waiting,
                input=user,
                waiting_on=pending.key,
            )
        result = TaskResult(
            task_id=task.id,
            worker=worker.name,
            status=TaskStatus.succeeded,
            output=outcome.output,
            attempts=outcome.attempts,
            review_attempts=reviews,
            usage=self.ledger.usage_of(f"task:{task.id}"),
            latency=time.perf_counter() - started,
            model=outcome.model,
            revisions=revisions,
            approved=approved,
            unreviewed=unreviewed,
            missing_inputs=missing,
            input=user,
            replan=replan_hint(outcome.output) if self.hints else None,
        )
        self.emit(TaskFinished.of(self.run_id, result))
        return result

    async def _produce(self, task: Task, worker: Worker, user: str) -> CallOutcome:
        """The worker's models, then its fallback workers' models, until one answers."""
        outcome = await self._call(task, worker, user)
        tried = {worker.name}
        while (
            outcome.error is not None
            and worker.fallback is not None
            and worker.fallback not in tried
        ):
            self.emit(
                TaskFallback(
                    run_id=self.run_id,
                    task_id=task.id,
                    kind="worker",
                    to=worker.fallback,
                    error=str(outcome.error),
                )
            )
            worker = self.registry.get(worker.fallback)
            tried.add(worker.name)
            later = await self._call(task, worker, user)
            later.attempts += outcome.attempts
            outcome = later
        return outcome

    def _call(self, task: Task, worker: Worker, user: str) -> Awaitable[CallOutcome]:
        """One worker's call (or tool loop), its retries and model fallback reported as
        the task's events."""
        scope = self.ledger.scope(CallPurpose.task, task_id=task.id, worker=worker.name)
        system = worker.system_prompt
        if self.hints and worker.output_schema is None:
            system += HINT_SUFFIX
        report = _Report(self.emit, self.run_id, task.id)
        on_retry, on_fallback = report.retried, report.fell_back
        if worker.tools:
            return self._tool_loop(task, worker, system, user, on_retry, on_fallback, scope)
        return self._plain(worker, system, user, on_retry, on_fallback, scope)

    def _plain(
        self,
        worker: Worker,
        system: str,
        user: str,
        on_retry: OnRetry,
        on_fallback: OnFallback,
        scope: CallLog,
    ) -> Awaitable[CallOutcome]:
        """One model call, no tools."""
        return call_worker(
            worker,
            self._models_of(worker),
            system,
            user,
            output_schema=worker.output_schema,
            call_timeout=timeout_for(worker, self.timeout),
            on_retry=on_retry,
            on_fallback=on_fallback,
            scope=scope,
        )

    async def _tool_loop(
        self,
        task: Task,
        worker: Worker,
        system: str,
        user: str,
        on_retry: OnRetry,
        on_fallback: OnFallback,
        scope: CallLog,
    ) -> CallOutcome:
        """The worker's tool loop (``engine.tooling``), over the tools its allow-list
        names; a tool source that cannot be opened fails the attempt with why. A worker
        whose allow-list names no tool the toolbox has (built-in tools not switched on,
        a misspelt name: logged) makes one plain call."""
        try:
            tools = await allowed_tools(self.registry.tools, worker, self.run_id, self._warned)
        except Exception as exc:
            why = f"the tools of worker {worker.name!r} are unavailable: {exc}"
            return CallOutcome(error=ModelError(why))
        if not tools:
            return await self._plain(worker, system, user, on_retry, on_fallback, scope)
        loop, numbered = self._loops.get(task.id, (0, 0))
        tool_loop = ToolLoop(
            run_id=self.run_id,
            task_id=task.id,
            worker=worker,
            tools=tools,
            models=self._models_of(worker),
            emit=self.emit,
            gate=self.gate,
            journal=self.tool_journal,
            loop=loop,
            numbered=numbered,
            call_timeout=timeout_for(worker, self.timeout),
            on_retry=on_retry,
            on_fallback=on_fallback,
            scope=scope,
        )
        try:
            return await tool_loop.run(system, user, worker.output_schema)
        finally:  # a later loop of the task (fallback, revision) numbers on from here
            self._loops[task.id] = (loop + 1, tool_loop.numbered)

    def _models_of(self, worker: Worker) -> list:
        """The worker's model, then its fallback model: one list per worker and run."""
        known = self._models.get(worker.name)
        if known is not None and known[0] is worker:
            return known[1]
        models = [self.models.get(worker.model)]
        if worker.fallback_model is not None:
            models.append(self.models.get(worker.fallback_model))
        self._models[worker.name] = (worker, models)
        return models

    async def _quality_gate(
        self,
        task: Task,
        worker: Worker,
        inputs: dict[str, Any],
        outcome: CallOutcome,
        gate: tuple[Worker, int],
    ) -> tuple[bool | None, int, int, str | None]:
        """Review, and revise while rejected (bounded): the quality gate, or the task's
        judge (``gate``, from ``_gate_of``). Updates ``outcome`` in place.

        Returns the verdict, the revisions made, the review calls (retries included) and,
        when the validator could give no verdict, why.
        """
        judge, max_revisions = gate
        revisions = reviews = 0
        while True:
            review = await call_worker(
                judge,
                self._models_of(judge),
                judge.system_prompt + REVIEW_SUFFIX,
                review_input(task.instructions, outcome.output),
                output_schema=Verdict,
                call_timeout=timeout_for(judge, self.timeout),
                on_retry=retried(self.emit, self.run_id, "review", task.id),
                scope=self.ledger.scope(CallPurpose.review, task_id=task.id, worker=judge.name),
            )
            reviews += review.attempts
            if review.error is not None:
                # A reviewer that cannot answer is not a rejection: keep the output, unjudged.
                self.emit(
                    TaskValidated(
                        run_id=self.run_id,
                        task_id=task.id,
                        approved=None,
                        reasons=[f"not reviewed: the validator failed ({review.error})"],
                        revision=revisions,
                    )
                )
                return None, revisions, reviews, f"the validator failed: {review.error}"
            verdict = Verdict.model_validate(review.output)
            self.emit(
                TaskValidated(
                    run_id=self.run_id,
                    task_id=task.id,
                    approved=verdict.approved,
                    reasons=verdict.reasons,
                    revision=revisions,
                )
            )
            if verdict.approved or revisions >= max_revisions:
                return verdict.approved, revisions, reviews, None
            revisions += 1
            user = worker_input(
                task.instructions, inputs, task.args, feedback=(outcome.output, verdict.reasons)
            )
            revised = await self._produce(task, worker, user)
            outcome.attempts += revised.attempts
            if revised.error is not None:
                return False, revisions, reviews, None  # the last good output, marked rejected
            outcome.output, outcome.model = revised.output, revised.model

    def _gate_of(self, task: Task, worker: Worker) -> tuple[Worker, int] | None:
        """The reviewer of ``task`` and the revisions it may ask for: the task's own
        ``judge`` (generator-evaluator), else the run's validator, unless that is the
        worker itself; ``None``: the output is not reviewed."""
        if task.judge is not None:
            rounds = task.max_rounds if task.max_rounds is not None else DEFAULT_ROUNDS
            return self.registry.get(task.judge), rounds - 1
        if self.validator is None or self.validator.name == worker.name:
            return None
        return self.validator, self.max_revisions

    def _failed(
        self,
        task: Task,
        worker: Worker,
        error: str,
        outcome: CallOutcome,
        missing: list[str],
        user: str,
        latency: float,
    ) -> TaskResult:
        usage = self.ledger.usage_of(f"task:{task.id}")
        return failed_task(
            self.emit, self.run_id, task, worker, error, outcome.attempts, usage, latency,
            missing=missing, user=user,
        )  # fmt: skip


#: What ``_quality_gate`` returns for an output nobody reviews (no coroutine for it).
_UNREVIEWED: tuple[bool | None, int, int, str | None] = (None, 0, 0, None)


class _Report:
    """A task's retries and model fallbacks, reported as its events: one small object
    per task rather than two closures (each with its cells) in every burst of starts."""

    __slots__ = ("emit", "run_id", "task_id")

    def __init__(self, emit: Emit, run_id: str, task_id: str) -> None:
        self.emit, self.run_id, self.task_id = emit, run_id, task_id

    def retried(self, attempt: int, error: ModelError, delay: float) -> None:
        self.emit(
            TaskRetried(
                run_id=self.run_id,
                task_id=self.task_id,
                attempt=attempt,
                error=str(error),
                delay=delay,
            )
        )

    def fell_back(self, name: str, error: ModelError) -> None:
        self.emit(
            TaskFallback(
                run_id=self.run_id, task_id=self.task_id, kind="model", to=name, error=str(error)
            )
        )


def _as_input(result: TaskResult) -> Any:
    if result.succeeded:
        return result.output
    return {"missing": True, "reason": f"task {result.status.value}: {result.error}"}


def failed_task(
    emit: Callable[[Any], None],
    run_id: str,
    task: Task,
    worker: Worker,
    error: str,
    attempts: int,
    usage: Usage,
    latency: float,
    *,
    missing: list[str],
    user: str,
) -> TaskResult:
    """Record a task's failure (``task_failed``) and its result; under the worker's
    'abort' policy, stop the run with it. Shared by worker and team (nested) tasks."""
    emit(
        TaskFailed(
            run_id=run_id, task_id=task.id, worker=worker.name, error=error,
            policy=worker.on_failure,
        )
    )  # fmt: skip
    result = TaskResult(
        task_id=task.id,
        worker=worker.name,
        status=TaskStatus.failed,
        error=error,
        attempts=attempts,
        usage=usage,
        latency=latency,
        missing_inputs=missing,
        input=user,
    )
    if worker.on_failure == "abort":
        raise RunAbortedError(task.id, error, result=result)
    return result
