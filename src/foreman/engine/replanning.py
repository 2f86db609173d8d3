"""Replanning: the orchestrator revises the rest of the plan as tasks settle.

The planned driver runs its plan as a ``DagRun`` that may grow. With a policy other than
``never``, a ``Replanner`` hears of each settled task (after its checkpoint) and, when the
policy says so, asks the planner model for a revision while the other tasks go on running.
The task that asked is handed to the scheduler only once its revision is done, so the
tasks that depend on it wait for the revision (it may change or drop them), while every
other branch runs on:

- ``always``: after every settled task; tasks that settle while a revision is in flight
  are considered together by the next one;
- ``on-hint``: only after a task whose result asks for it (``TaskResult.replan``, see
  ``engine.replan_prompts``);
- ``never``: one plan, as before (no ``Replanner`` at all).

A revision is one model call (retried with its errors when it does not validate, like a
plan), recorded in the ledger with purpose ``replan``. Applied, it adds, changes or drops
pending tasks at once (new tasks whose inputs exist start immediately, after the new plan
version is stored: a resume always knows every task it may find a result for). A revision
cut short by the end of the process is not asked again on resume: the run goes on from the
latest stored version.

Bounds: ``max_replans`` revisions per run (stored versions count, so a resume continues
the count), and the budget (no revision once a limit is reached). ``engine.progress``
detects a stall; then no revision and no task starts any more, the running tasks finish,
and the run ends ``stalled`` with what finished assembled (docs/replanning.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping

from foreman.engine.calls import retried
from foreman.engine.context import compactor_of
from foreman.engine.lifecycle import Execution
from foreman.engine.progress import Progress
from foreman.engine.replan_prompts import (
    REPLAN_GOAL,
    bounded_entries,
    full_entries,
    replan_retry_prompt,
    replan_system_prompt,
    revision_request,
)
from foreman.engine.routing import route_revision
from foreman.engine.scheduler import DagRun, ExecuteTask, Halt
from foreman.engine.settings import DEFAULTS, ReplanPolicy
from foreman.errors import BudgetExceededError, ConfigError, ModelError, OutputValidationError
from foreman.events import PlanRejected, PlanRevised, ReplanStalled
from foreman.ledger.recorder import CallScope
from foreman.ledger.records import CallPurpose
from foreman.models.base import Message, ModelRequest, Usage
from foreman.models.retry import RetryPolicy, complete_with_retry, numbered_after
from foreman.plan.prompts import output_lists
from foreman.plan.revise import Revision, changes_of, check_revision, parse_revision
from foreman.plan.revise import revision_schema as schema_for
from foreman.plan.schema import Plan, Task
from foreman.results import TaskResult, TaskStatus
from foreman.workers.registry import TeamReplan

POLICIES: tuple[ReplanPolicy, ...] = ("never", "on-hint", "always")
#: Tokens a revision answer may take.
REVISION_MAX_TOKENS = 1500


def replan_settings(
    team: TeamReplan | None, replan: str | None, max_replans: int | None
) -> tuple[ReplanPolicy, int]:
    """The policy and bound a run uses: those given, else the team file's, else the
    defaults; ``ConfigError`` for a policy that does not exist or a negative bound."""
    policy = replan if replan is not None else (team.policy if team else DEFAULTS.replan)
    if policy not in POLICIES:
        raise ConfigError(f"replan must be one of {', '.join(POLICIES)}, not {policy!r}.")
    if max_replans is None:
        team_max = team.max_replans if team else None
        max_replans = team_max if team_max is not None else DEFAULTS.max_replans
    if isinstance(max_replans, bool) or not isinstance(max_replans, int) or max_replans < 0:
        raise ConfigError(f"max_replans must be a whole number, 0 or more, not {max_replans!r}.")
    return policy, max_replans  # type: ignore[return-value]


class _NoRevision(Exception):
    """The model wrote no revision that can apply, in every attempt allowed."""


class Replanner:
    """Revises one execution's plan as its tasks settle; see the module docstring."""

    def __init__(self, run: Execution, plan: Plan) -> None:
        settings = run.deps.settings
        self.run = run
        self.policy = settings.replan
        self.max_replans = settings.max_replans
        self.plan = plan
        self.version = 1
        #: Revision calls made, retries included.
        self.attempts = 0
        self.dag: DagRun | None = None
        self.progress = Progress()
        #: Why replanning stalled; once set, no revision and no new task starts.
        self.stalled: str | None = None
        #: A failure that must fail the run (the store could not keep a revision).
        self.error: BaseException | None = None
        self._done = False  # no more revisions: the bound or the budget was reached
        self._fresh: list[str] = []
        #: Tasks whose results a revision is considering: settled, not yet handed back.
        self._settling: dict[str, TaskResult] = {}
        self._next: asyncio.Future[None] | None = None  # done when the queued batch is
        self._worker: asyncio.Task[None] | None = None
        self._saved: asyncio.Event | None = None  # set once the version in flight is stored
        self._unsaved: set[str] = set()
        self._scope = run.journal.ledger.scope(CallPurpose.replan)
        self._grown: Callable[[Mapping[str, TaskResult]], None] | None = None
        #: Compaction of the results it reads, with a context budget (``engine.context``).
        self._fit = compactor_of(run)

    async def attach(
        self, dag: DagRun, grown: Callable[[Mapping[str, TaskResult]], None] | None = None
    ) -> None:
        """Revise ``dag``; the stored plan versions say how many revisions came before.
        ``grown`` hears the results so far each time a revision is applied (for-each tasks
        it added expand over them: ``engine.expansion``)."""
        self.dag = dag
        self._grown = grown
        record = await self.run.deps.store.get_run(self.run.run_id)
        self.version = max(record.plan_version, 1)
        self._done = self.revisions >= self.max_replans

    @property
    def revisions(self) -> int:
        return self.version - 1

    def around(self, execute: ExecuteTask) -> ExecuteTask:
        """``execute``, refused (``Halt``) once replanning stalled, reporting each settled
        task to the replanner and, when it asks for a revision, returning once that is
        done; a task a revision added waits until that version is stored."""

        async def run_task(task: Task, inputs: dict[str, TaskResult]) -> TaskResult:
            if task.id in self._unsaved and self._saved is not None:
                await self._saved.wait()
            if self.stalled is not None or self.error is not None:
                raise Halt(self.stalled or str(self.error))
            result = await execute(task, inputs)
            revised = self.settled(result)
            if revised is not None:
                try:
                    await revised
                finally:
                    self._settling.pop(task.id, None)
            return result

        return run_task

    def settled(self, result: TaskResult) -> asyncio.Future[None] | None:
        """A task's result is checkpointed: note a stall, or queue it for a revision and
        return what is done once that revision is."""
        if self.stalled is not None or result.status is TaskStatus.waiting or self.dag is None:
            return None
        results = {**self.dag.results, **self._settling, result.task_id: result}
        if (stall := self.progress.failed(result, self.plan, results)) is not None:
            self._stall(stall)
            return None
        if (
            self._done
            or self.error is not None
            or not (self.policy == "always" or (self.policy == "on-hint" and result.replan))
        ):
            return None
        self._settling[result.task_id] = result
        self._fresh.append(result.task_id)
        loop = asyncio.get_running_loop()
        if self._next is None:
            self._next = loop.create_future()
        if self._worker is None:
            self._worker = loop.create_task(self._work(), name=f"foreman-replan-{self.run.run_id}")
        return self._next

    async def close(self) -> None:
        """Stop a revision still in flight (the run is ending: cancelled, failed)."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    # --- one revision -------------------------------------------------------------------

    async def _work(self) -> None:
        """Revise for each batch of settled tasks in turn, until none is queued."""
        batch: asyncio.Future[None] | None = None
        try:
            while self._fresh:
                fresh, self._fresh = self._fresh, []
                batch, self._next = self._next, None
                if not self._done and self.stalled is None:
                    await self._consider(fresh)
                    if isinstance(self._scope, CallScope):
                        self._scope.release()
                _resolve(batch)
        except BudgetExceededError:
            self._done = True  # the driver ends the run over_budget
        except _NoRevision as exc:
            self._stall(str(exc))
        except ModelError as exc:
            self._stall(f"the revision call failed: {exc}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the store failed: the run fails with it
            self.error = exc
        finally:
            if isinstance(self._scope, CallScope):  # its last call judged: logs and traces
                self._scope.release()
            self._worker = None
            _resolve(batch)  # nobody waits forever: the tasks are handed back as they are
            _resolve(self._next)
            self._next, self._fresh = None, []

    async def _consider(self, fresh: list[str]) -> None:
        """Ask for a revision after ``fresh`` settled; apply it, or stall, or keep going."""
        if self.revisions >= self.max_replans:
            self._done = True
            return
        meter = self.run.meter
        if meter is not None and meter.exceeded is not None:
            self._done = True
            return
        deps, run, dag = self.run.deps, self.run, self.dag
        assert dag is not None
        results = self._results()
        if self._fit is None:
            entries = bounded_entries(results, fresh)
        else:  # over the context budget, older results reach the reviser as summaries
            entries = await self._fit(full_entries(results, fresh), "replan", REPLAN_GOAL)
        message = revision_request(
            run.state.request, self.plan, self._states(), results, entries, fresh
        )
        messages = [Message(role="user", content=message)]
        request = ModelRequest(
            system=replan_system_prompt(deps.registry, deps.settings.max_tasks),
            messages=messages,
            output_schema=schema_for(
                deps.registry.names(),
                with_args=any(worker.input_schema is not None for worker in deps.registry),
                with_for_each=any(map(output_lists, deps.registry)),
            ),
            max_tokens=REVISION_MAX_TOKENS,
            temperature=0.0,
        )
        usage, attempts, errors = Usage(), 0, []
        for number in range(1, deps.settings.max_plan_retries + 2):
            call = await complete_with_retry(
                deps.planner(),
                request,
                deps.retry or RetryPolicy(),
                call_timeout=deps.own_timeout(),
                caller="the replanner",
                on_retry=numbered_after(retried(run.emit, run.run_id, "replan"), attempts),
                scope=self._scope,
            )
            attempts += call.attempts
            self.attempts += call.attempts
            usage += call.usage
            if call.error is not None and not isinstance(call.error, OutputValidationError):
                raise call.error
            raw = call.output or ""
            revision, errors = (None, [str(call.error)]) if call.error else parse_revision(raw)
            if revision is not None:
                if revision.empty:
                    return  # the plan stands
                revision, revised, errors = await self._checked(revision)
                if revised is not None:
                    await self._apply(revision, revised, usage)
                    return
            if isinstance(self._scope, CallScope):
                self._scope.refuse_last("RevisionRejected", "; ".join(errors))
            run.emit(PlanRejected(run_id=run.run_id, attempt=number, errors=errors))
            messages = [
                *messages,
                Message(role="assistant", content=raw or "(no answer)"),
                Message(role="user", content=replan_retry_prompt(errors)),
            ]
            request = request.model_copy(update={"messages": messages})
        raise _NoRevision(
            f"no valid revision in {deps.settings.max_plan_retries + 1} attempts: "
            + "; ".join(errors)[:300]
        )

    async def _checked(self, revision: Revision) -> tuple[Revision, Plan | None, list[str]]:
        """The revision as it will apply (its tasks routed, with a router: ``engine.routing``;
        as the replanner wrote it when the routed one would not check), the plan it makes
        (``None``: rejected) and why not."""
        deps = self.run.deps
        routed, events = await route_revision(self.run, revision)
        for candidate in (routed, revision) if routed is not revision else (revision,):
            revised, errors = check_revision(
                self.plan,
                candidate,
                self._states(),
                deps.registry,
                max_tasks=deps.settings.max_tasks,
            )
            if revised is not None:
                for event in events if candidate is routed else []:
                    self.run.emit(event)
                return candidate, revised, errors
        return revision, None, errors

    async def _apply(self, revision: Revision, revised: Plan, usage: Usage) -> None:
        """Store the revised plan as the next version and grow the DAG with it."""
        dag = self.dag
        assert dag is not None
        idle, stall = self.progress.revision(revision, self.plan, self._results())
        if stall is not None:
            self._stall(stall)
            return
        if idle:
            return
        changes = changes_of(revision)
        # No await between the state check and these: a pending task cannot start meanwhile.
        self._unsaved = {*changes.added, *changes.changed}
        self._saved = saved = asyncio.Event()
        # Nothing starts until the for-each tasks the revision added are expanded: one over
        # a list that settled earlier would otherwise start unexpanded, and fail.
        with dag.paused():
            try:
                dag.add(revision.add)
                for task in revision.change:
                    dag.change(task)
                if revision.drop:
                    dag.drop(revision.drop)
                self.plan = self.run.state.plan = revised
                reason = revision.reason.strip() or "(no reason given)"
                self.version = await self.run.journal.save_revision(
                    revised, usage, reason=reason, changes=changes
                )
            finally:
                self._unsaved = set()
                saved.set()
            self.run.emit(
                PlanRevised(
                    run_id=self.run.run_id,
                    version=self.version,
                    reason=reason,
                    added=changes.added,
                    changed=changes.changed,
                    dropped=changes.dropped,
                    plan=revised,
                    usage=usage,
                )
            )
            if self._grown is not None:
                self._grown(self._results())
        if self.revisions >= self.max_replans:
            self._done = True

    def _states(self) -> dict[str, str]:
        """Each plan task's state; a for-each task already expanded into its items runs
        (``engine.expansion``: the DAG holds it as their join), so no revision changes it."""
        dag, settling = self.dag, self._settling
        assert dag is not None
        in_dag = {task.id: task for task in dag.tasks}
        states = {}
        for task in self.plan.tasks:
            state = "settled" if task.id in settling else dag.state(task.id)
            if state == "pending" and in_dag.get(task.id, task) != task:
                state = "running"
            states[task.id] = state
        return states

    def _results(self) -> dict[str, TaskResult]:
        assert self.dag is not None
        return {**self.dag.results, **self._settling}

    def _stall(self, reason: str) -> None:
        self.stalled = reason
        self.run.emit(ReplanStalled(run_id=self.run.run_id, reason=reason))


def _resolve(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


def stalled_parts(plan: Plan, results: dict[str, TaskResult], reason: str) -> dict[str, TaskResult]:
    """Every task of ``plan`` for assembly: its result, or one saying it never ran."""
    return {
        task.id: results.get(task.id)
        or TaskResult(
            task_id=task.id,
            worker=task.worker,
            status=TaskStatus.skipped,
            error=f"not run: replanning stalled ({reason})",
        )
        for task in plan.tasks
    }
