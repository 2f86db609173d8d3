"""The orchestrator: request -> plan -> tasks -> results -> answer.

This module only wires the stages together; each stage lives in its own module (planner,
scheduler, task runner, assembly) so it can be read and tested alone.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from foreman.engine.assembly import AssemblyMethod, assemble
from foreman.engine.results import RunResult, RunStatus, TaskResult, confidences
from foreman.engine.scheduler import run_dag
from foreman.engine.tasks import TaskRunner
from foreman.errors import ConfigError, PlanError, RunAbortedError
from foreman.events import (
    Assembled,
    Event,
    PlanReady,
    PlanRejected,
    RunFinished,
    RunStarted,
)
from foreman.models.base import Model, Usage
from foreman.models.pool import ModelPool
from foreman.plan.planner import Planner
from foreman.plan.schema import Plan
from foreman.plan.validate import validate_plan
from foreman.workers.registry import Registry
from foreman.workers.spec import Worker

OnEvent = Callable[[Event], None]


class Orchestrator:
    """Plans a request, routes each task to a worker, runs the DAG, checks and assembles.

    >>> orchestrator = Orchestrator(model="local")
    >>> result = await orchestrator.run("Explain HTTPS to a new developer")
    >>> print(result.answer)

    ``model`` is the default for the planner, the synthesis and every worker that names
    none; ``planner_model`` overrides it for planning. Names or ``Model`` instances both
    work; ``models`` maps extra names to instances (handy with ``foreman.testing``).
    """

    def __init__(
        self,
        workers: Registry | Iterable[Worker] | None = None,
        *,
        model: Model | str | None = None,
        planner_model: Model | str | None = None,
        models: Mapping[str, Model] | None = None,
        concurrency: int | None = 8,
        max_tasks: int = 8,
        max_plan_retries: int = 2,
        validator: str | None = None,
        max_revisions: int = 1,
        assembly: AssemblyMethod = "synthesis",
    ) -> None:
        if workers is None:
            workers = Registry.default()
        self.registry = workers if isinstance(workers, Registry) else Registry(workers)
        self.registry.check_references()
        if concurrency is not None and concurrency < 1:
            raise ConfigError("concurrency must be at least 1 (or None for no limit).")
        if assembly not in ("synthesis", "concat"):
            raise ConfigError(f"assembly must be 'synthesis' or 'concat', not {assembly!r}.")
        self.models = ModelPool(model, models)
        self._planner_model = planner_model
        self.concurrency = concurrency
        self.max_tasks = max_tasks
        self.max_plan_retries = max_plan_retries
        self.validator = self.registry.get(validator) if validator else None
        self.max_revisions = max_revisions
        self.assembly: AssemblyMethod = assembly

    # --- public API --------------------------------------------------------------------

    async def plan(self, request: str, on_event: OnEvent | None = None) -> tuple[Plan, Usage]:
        """A validated plan for ``request`` and the tokens it cost, without running it."""
        return await self._make_plan("", request, on_event or _ignore)

    async def run(
        self, request: str, *, plan: Plan | None = None, on_event: OnEvent | None = None
    ) -> RunResult:
        """Run ``request`` end to end (or execute a given ``plan``) and return the result.

        ``on_event`` is called with every event as it happens. Raises ``PlanError`` when
        no valid plan can be had; an aborted run returns with ``status == "aborted"``.
        """
        return await self._execute(new_run_id(), request, plan, on_event or _ignore)

    async def stream(self, request: str, *, plan: Plan | None = None) -> AsyncIterator[Event]:
        """Yield typed events as the run happens; the last one is ``RunFinished``.

        Leaving the loop early (or cancelling) cancels the run's running tasks.
        """
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        job = asyncio.create_task(self._execute(new_run_id(), request, plan, queue.put_nowait))
        job.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (event := await queue.get()) is not None:
                yield event
            job.result()  # re-raise a planning failure
        finally:
            if not job.done():
                job.cancel()
                await asyncio.gather(job, return_exceptions=True)

    def run_sync(self, request: str, **kwargs: Any) -> RunResult:
        """``run`` for scripts and notebooks without an event loop of their own."""
        return asyncio.run(self._run_and_close(request, **kwargs))

    async def aclose(self) -> None:
        await self.models.aclose()

    # --- stages ------------------------------------------------------------------------

    async def _execute(
        self, run_id: str, request: str, plan: Plan | None, emit: OnEvent
    ) -> RunResult:
        started = time.perf_counter()
        emit(RunStarted(run_id=run_id, request=request))
        usage = Usage()
        if plan is None:
            plan, usage = await self._make_plan(run_id, request, emit)
        else:
            errors = validate_plan(plan, self.registry, max_tasks=len(plan.tasks))
            if errors:
                raise PlanError("The given plan cannot run:", errors=errors)
        emit(PlanReady(run_id=run_id, plan=plan, usage=usage))

        runner = TaskRunner(
            run_id,
            self.registry,
            self.models,
            emit,
            validator=self.validator,
            max_revisions=self.max_revisions,
        )
        results: dict[str, TaskResult] = {}
        worker_limits = {w.name: w.max_concurrency for w in self.registry if w.max_concurrency}
        error: str | None = None
        try:
            await run_dag(
                plan,
                runner,
                concurrency=self.concurrency,
                worker_limits=worker_limits,
                results=results,
            )
        except RunAbortedError as exc:
            error = str(exc)
            if exc.result is not None:  # keep the failed task's record and its tokens
                results[exc.task_id] = exc.result
        for result in results.values():
            usage += result.usage
        confidence = confidences(plan, results)

        answer = None
        if error is None:
            assembly = await assemble(
                self.assembly, request, plan, results, confidence, self.models.default
            )
            usage += assembly.usage
            answer = assembly.answer
            emit(Assembled(run_id=run_id, method=assembly.method, answer=answer))
        result = RunResult(
            run_id=run_id,
            request=request,
            status=_status(error, results),
            plan=plan,
            tasks=results,
            answer=answer,
            confidence=confidence,
            usage=usage,
            error=error,
            elapsed=time.perf_counter() - started,
        )
        emit(RunFinished(run_id=run_id, result=result))
        return result

    async def _make_plan(self, run_id: str, request: str, emit: OnEvent) -> tuple[Plan, Usage]:
        model = self._planner_model
        planner = Planner(
            model if isinstance(model, Model) else self.models.get(model),
            self.registry,
            max_tasks=self.max_tasks,
            max_retries=self.max_plan_retries,
        )
        outcome = await planner.plan(
            request,
            on_rejected=lambda attempt, errors: emit(
                PlanRejected(run_id=run_id, attempt=attempt, errors=errors)
            ),
        )
        return outcome.plan, outcome.usage

    async def _run_and_close(self, request: str, **kwargs: Any) -> RunResult:
        try:
            return await self.run(request, **kwargs)
        finally:
            await self.aclose()


def new_run_id() -> str:
    """Sortable by time, unique enough to never collide in one store."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def _status(error: str | None, results: dict[str, TaskResult]) -> RunStatus:
    if error is not None:
        return RunStatus.aborted
    if all(result.succeeded for result in results.values()):
        return RunStatus.succeeded
    return RunStatus.partial


def _ignore(_: Event) -> None:
    return None
