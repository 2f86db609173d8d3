"""What every pattern is: a shape of work compiled to a ``Plan``, run by the engine.

A pattern writes no model call of its own and runs nothing itself: ``plan_for`` turns a
request into a plan (tasks, workers, dependencies, the task whose output is the answer),
and ``Orchestrator.run(request, plan=...)`` executes it. So a pattern's run is what any
run is: checkpointed and resumable, every call in the ledger and costed, risky workers
approved, events streamed, its budget enforced. ``workers()`` and ``plan_for`` are also
what a parent needs to run a pattern as a child of another run.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import aclosing
from typing import Any

from foreman.engine.orchestrator import Orchestrator
from foreman.errors import ConfigError
from foreman.events import Event
from foreman.plan.schema import Plan
from foreman.results import RunResult
from foreman.workers.registry import Registry
from foreman.workers.spec import Worker

OnEvent = Callable[[Event], None]

#: What a task id and a worker name may look like (``Worker.name``'s pattern).
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_\-]*")


class Pattern(ABC):
    """A pipeline, fan-out or generator-evaluator: a ``Plan`` for each request.

    ``run`` builds an ``Orchestrator`` with ``orchestrator(**settings)`` (any of its
    keyword arguments: ``model``, ``store``, ``budget``...) unless one is given, which
    must know the pattern's workers. One built here closes its model clients when the
    run ends; a store you pass stays open (``resume`` goes through
    ``orchestrator(...).resume(run_id)`` on it).
    """

    #: The pattern's name (a team file's ``patterns:`` entry, a parent's worker name).
    name: str

    @abstractmethod
    def workers(self) -> list[Worker]:
        """The workers the plans of this pattern route to."""

    @abstractmethod
    def plan_for(self, request: str) -> Plan:
        """The plan that carries out ``request``; its ``answer_task`` gives the answer."""

    def orchestrator(
        self, workers: Registry | Iterable[Worker] | None = None, **settings: Any
    ) -> Orchestrator:
        """An ``Orchestrator`` with ``settings``, whose team is this pattern's workers and
        ``workers`` when given (a team the run's budget may come from)."""
        base = workers if workers is not None else Registry()
        registry = Registry(base, budget=base.budget if isinstance(base, Registry) else None)
        for worker in self.workers():
            if worker.name in registry and registry.get(worker.name) != worker:
                raise ConfigError(
                    f"The team already has a different worker named {worker.name!r}; "
                    f"rename one of them for pattern {self.name!r}."
                )
            registry.add(worker)
        return Orchestrator(registry, **settings)

    async def run(
        self,
        request: str,
        *,
        orchestrator: Orchestrator | None = None,
        on_event: OnEvent | None = None,
        **settings: Any,
    ) -> RunResult:
        """Run the pattern on ``request``; ``result.answer`` is its answer task's output
        (``output(result)`` gives it typed)."""
        return await self._run(request, self.plan_for(request), orchestrator, on_event, settings)

    def stream(
        self, request: str, *, orchestrator: Orchestrator | None = None, **settings: Any
    ) -> AsyncIterator[Event]:
        """Events as the pattern runs; the last one is ``RunFinished``."""
        return self._stream(request, self.plan_for(request), orchestrator, settings)

    def output(self, result: RunResult) -> Any:
        """The answer task's output (an instance of its worker's schema when it has one);
        ``None`` when that task did not succeed."""
        task_id = result.plan.answer_task if result.plan is not None else None
        answer = result.tasks.get(task_id) if task_id is not None else None
        return answer.output if answer is not None and answer.succeeded else None

    async def _run(
        self,
        request: str,
        plan: Plan,
        orchestrator: Orchestrator | None,
        on_event: OnEvent | None,
        settings: dict[str, Any],
    ) -> RunResult:
        runner = self._runner(orchestrator, settings)
        try:
            return await runner.run(request, plan=plan, on_event=on_event)
        finally:
            if orchestrator is None:  # built here: its model clients end with the run
                await runner.models.aclose()

    async def _stream(
        self,
        request: str,
        plan: Plan,
        orchestrator: Orchestrator | None,
        settings: dict[str, Any],
    ) -> AsyncIterator[Event]:
        runner = self._runner(orchestrator, settings)
        try:
            async with aclosing(runner.stream(request, plan=plan)) as events:
                async for event in events:
                    yield event
        finally:
            if orchestrator is None:
                await runner.models.aclose()

    def _runner(self, given: Orchestrator | None, settings: dict[str, Any]) -> Orchestrator:
        if given is None:
            return self.orchestrator(**settings)
        if settings:
            raise ConfigError(
                f"Give either an orchestrator or its settings ({', '.join(settings)}), not both."
            )
        for worker in self.workers():
            if worker.name not in given.registry or given.registry.get(worker.name) != worker:
                raise ConfigError(
                    f"The orchestrator's team lacks pattern {self.name!r}'s worker "
                    f"{worker.name!r} (or has another one by that name); build it with "
                    "pattern.orchestrator(...)."
                )
        return given


def check_name(name: str, what: str) -> str:
    """``name`` if it can be a task id and a worker name; ``ConfigError`` if not."""
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"{what} {name!r} must start with a letter and hold only letters, digits, '_' and '-'."
        )
    return name
