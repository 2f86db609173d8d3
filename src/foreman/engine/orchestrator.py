"""The orchestrator: the public face of the engine.

It holds the configuration (team, models, limits, store, approval policy) and offers the
operations on runs: plan, run, stream, resume, replay. The stages themselves live in
``engine.lifecycle`` (one execution of a run), ``engine.drivers`` (what moves it),
``engine.scheduler``, ``engine.tasks`` and ``engine.assembly``, each readable alone; they
get ``RunDeps`` (``engine.settings``), never the orchestrator.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from foreman.embeddings.base import Embedder, embedder_of
from foreman.engine.approvals import ApprovalCallback, auto_approve_level
from foreman.engine.assembly import AssemblyMethod
from foreman.engine.context import MIN_SUMMARY_TOKENS
from foreman.engine.delivery import events_of
from foreman.engine.estimate import HISTORY_CALLS, Estimator, History, PlanEstimate
from foreman.engine.journal import STARTED_WRITE_WINDOW
from foreman.engine.lifecycle import RunState, execute
from foreman.engine.memory import Memory, memory_settings
from foreman.engine.nesting import ChildRun, nested_books, stored_result, team_model_names
from foreman.engine.planning import check_given_plan, make_plan
from foreman.engine.replanning import replan_settings
from foreman.engine.replaying import replay_task
from foreman.engine.resuming import books_before, record_budget
from foreman.engine.routing import resolve_router
from foreman.engine.settings import DEFAULTS, ReplanPolicy, RunDeps, RunSettings
from foreman.errors import ConfigError, RunFinishedError, UnknownRunError
from foreman.events import Event
from foreman.ledger.budget import Budget, check_priced, executed_seconds, within
from foreman.models.base import Model, Usage
from foreman.models.pool import ModelPool
from foreman.models.pricing import check_prices
from foreman.models.retry import RetryPolicy
from foreman.plan.schema import Plan, check_max_tasks
from foreman.results import RunResult, TaskResult
from foreman.routing.base import Router
from foreman.store.base import RunRecord, Store
from foreman.store.memory import MemoryStore
from foreman.tracing.logs import LoggingObserver
from foreman.tracing.observer import Observer, Observers
from foreman.workers.nested import MAX_DEPTH
from foreman.workers.registry import RUN_MODES, Registry, RunMode
from foreman.workers.spec import RiskLevel, Worker

log = logging.getLogger(__name__)

OnEvent = Callable[[Event], None]


class Orchestrator:
    """Plans a request, routes each task to a worker, runs the DAG, checks and assembles.

    >>> orchestrator = Orchestrator(model="local")
    >>> result = await orchestrator.run("Explain HTTPS to a new developer")
    >>> print(result.answer)

    ``model`` is the default for the planner, the synthesis and every worker that names
    none; ``planner_model`` overrides it for planning. Names or ``Model`` instances both
    work; ``models`` maps extra names to instances (handy with ``foreman.testing``).

    Every run is checkpointed to ``store`` (in memory unless you pass one, e.g.
    ``SQLiteStore()``), task by task, so ``resume`` continues an interrupted run and
    ``replay`` re-runs one task. Workers of medium or high risk ask ``approve`` first; with
    no callback (or one returning ``None``) they wait, and the run pauses for a decision.

    ``timeout`` (seconds per model call) applies to workers that set none of their own,
    and to planning, reviews and synthesis; a call that outlasts it is retried. ``retry``
    is the retry policy of planning and synthesis. Every model is built here, so a wrong
    model name or a missing API key fails at once, before any run is recorded.

    Every model call attempt is recorded in the run's ledger (``store.list_calls``), with
    its tokens, cost, latency and outcome, and, unless ``record_prompts=False``, what the
    model was sent and answered; a durable store gets a call's ``started`` row within
    ``started_write_window`` seconds of its start, so a crash cannot hide a call.
    ``observers`` (``foreman.tracing``) watch every event and call: a ``LoggingObserver``
    is always among them (silent until logging is configured for the ``foreman`` logger);
    ``OTelObserver()`` sends traces to OpenTelemetry.

    ``estimate(plan)`` says what a plan will most likely cost and take before any of it is
    spent, from the ledger's history. With ``plan_budget_usd`` the planner is told the budget
    and each worker's typical cost, and a plan estimated over it goes back to the planner.

    ``mode`` is how a run is driven: ``"plan"`` writes the whole plan first and runs it;
    ``"delegate"`` gives the orchestrator model one tool per worker and lets it delegate
    turn by turn (in parallel within a turn) until it answers, in at most ``max_turns``
    turns and ``max_tasks`` delegations (``engine.drivers.delegating``). A team file's ``mode:``
    applies when none is given; a resumed run keeps the mode it was started with.

    ``budget`` (``foreman.Budget``) limits what each run may spend: tokens, dollars, wall
    time, calls; a team file's ``budget:`` applies when none is given. At a limit no call
    starts and the run ends ``over_budget`` with what finished; ``resume(run_id,
    budget=...)`` goes on under a raised one. ``timer`` measures its wall time.

    ``replan`` says when the orchestrator revises the plan as results come in: ``never``
    (the default), ``on-hint`` (a worker's result asks for it) or ``always`` (after every
    settled task); ``max_replans`` bounds the revisions of a run (docs/replanning.md). A
    team file's ``replan:`` section applies when they are not given.

    ``context_budget`` (tokens) bounds the results the orchestrator itself reads: past
    it, older results reach synthesis as summaries (``compaction`` calls in the ledger),
    while workers still get their dependencies' full outputs.

    ``router`` picks each task's worker instead of the planner: ``"llm"`` (one model call
    per task, from the workers' descriptions), ``"embedding"`` (no model call: similarity
    with the workers' descriptions and ``examples``, with ``embedder``) or a ``Router`` of
    your own; ``router_fallback`` is where a task no worker confidently matches goes
    (docs/routing.md). ``memory=True`` remembers every worker's output in ``store`` (at
    most ``memory_limit`` entries) and shows later workers, in this run and later ones,
    the ``memory_top_k`` most relevant (docs/memory.md); ``orchestrator.memory`` searches,
    lists and deletes them. A team file's ``router:`` and ``memory:`` apply when not given.

    A team (another orchestrator, a pattern, a team file) can be one of the workers
    (``foreman.workers.nested.TeamWorker``): its tasks run as nested runs in this store,
    at most ``max_depth`` deep (docs/hierarchies.md).
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
        store: Store | None = None,
        approve: ApprovalCallback | None = None,
        auto_approve: RiskLevel | str | None = None,
        lease_seconds: float = 30.0,
        started_write_window: float = STARTED_WRITE_WINDOW,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        record_prompts: bool = True,
        observers: Iterable[Observer] = (),
        plan_budget_usd: float | None = None,
        budget: Budget | None = None,
        replan: ReplanPolicy | None = None,
        max_replans: int | None = None,
        timer: Callable[[], float] = time.perf_counter,
        mode: RunMode | None = None,
        max_turns: int = DEFAULTS.max_turns,
        context_budget: int | None = None,
        max_depth: int = MAX_DEPTH,
        router: Router | str | None = None,
        router_fallback: str | None = None,
        router_min_score: float | None = None,
        embedder: Embedder | str | None = None,
        memory: bool | None = None,
        memory_limit: int | None = None,
        memory_top_k: int | None = None,
    ) -> None:
        if workers is None:
            workers = Registry.default()
        self.registry = workers if isinstance(workers, Registry) else Registry(workers)
        self.registry.check_references()
        if concurrency is not None and concurrency < 1:
            raise ConfigError("concurrency must be at least 1 (or None for no limit).")
        if assembly not in ("synthesis", "concat"):
            raise ConfigError(f"assembly must be 'synthesis' or 'concat', not {assembly!r}.")
        if timeout is not None and not timeout > 0:  # NaN too
            raise ConfigError(f"timeout must be a positive number of seconds, not {timeout!r}.")
        if plan_budget_usd is not None and not 0 < plan_budget_usd < math.inf:
            raise ConfigError(
                f"plan_budget_usd must be a positive amount, not {plan_budget_usd!r}."
            )
        mode = mode or self.registry.mode or "plan"
        if mode not in RUN_MODES:
            raise ConfigError(f"mode must be 'plan' or 'delegate', not {mode!r}.")
        if isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1:
            raise ConfigError(f"max_turns must be a whole number of at least 1, not {max_turns!r}.")
        check_prices()
        self.models = ModelPool(model, models)
        self.planner_model = planner_model
        #: Seconds per model call for workers that set no ``timeout`` of their own, and for
        #: planning, reviews and synthesis; ``None`` keeps each one's built-in default.
        self.timeout = timeout
        #: Retry policy of the orchestrator's own calls (planning, synthesis); workers and
        #: the validator keep their own ``retry``.
        self.retry = retry
        self.concurrency = concurrency
        self.max_tasks = check_max_tasks(max_tasks)
        self.max_plan_retries = max_plan_retries
        self.validator = self.registry.get(validator) if validator else None
        self.max_revisions = max_revisions
        self.assembly: AssemblyMethod = assembly
        self.store: Store = store if store is not None else MemoryStore()
        self.approve = approve
        self.auto_approve = auto_approve_level(auto_approve)  # ConfigError for 'high'
        self.lease_seconds = lease_seconds
        if started_write_window < 0:
            raise ConfigError("started_write_window must be 0 or more seconds.")
        #: Longest a started call's row may wait to ride with a checkpoint's write to a
        #: durable store (0: a write of its own at once); see ``engine.journal``.
        self.started_write_window = started_write_window
        #: Keep each call's prompt and output in the ledger (off for sensitive data).
        self.record_prompts = record_prompts
        self.observers = Observers(_with_logging(observers), record_prompts=record_prompts)
        #: Limits of each run (``resume`` may raise them); ``timer`` measures its seconds.
        self.budget = budget if budget is not None else self.registry.budget
        self.timer = timer
        if context_budget is not None and context_budget < 4 * MIN_SUMMARY_TOKENS:
            raise ConfigError(
                f"context_budget must be at least {4 * MIN_SUMMARY_TOKENS} tokens, "
                f"not {context_budget!r}."
            )
        #: Dollars a plan's estimate (``estimate``) may reach; the planner plans within it.
        #: A run's cost budget is the default: a plan estimated over it would be cut short.
        self.plan_budget_usd = (
            plan_budget_usd
            if plan_budget_usd is not None or self.budget is None
            else self.budget.max_cost_usd
        )
        self._build_models()
        check_priced(self.budget, self._model_names)
        replan, max_replans = replan_settings(self.registry.replan, replan, max_replans)
        team = self.registry
        memory, memory_limit, memory_top_k = memory_settings(
            team.memory, memory, memory_limit, memory_top_k
        )
        #: What the embedding router and memory compare texts with (loaded at first use).
        self.embedder = (
            embedder if isinstance(embedder, Embedder) else embedder_of(embedder or team.embedder)
        )
        #: Who picks each task's worker (``None``: the planner's choice stands).
        self.router, router_kind = resolve_router(
            self.registry,
            router,
            router_fallback,
            router_min_score,
            self.embedder,
            models=self.models,
            model=planner_model,
            retry=retry,
            timeout=timeout,
        )
        #: Recorded with each run, so ``foreman resume`` can rebuild this orchestrator.
        self.config = RunSettings(
            model=self.models.default_name,
            planner_model=_name(planner_model),
            concurrency=concurrency,
            max_tasks=max_tasks,
            max_plan_retries=max_plan_retries,
            validator=validator,
            max_revisions=max_revisions,
            assembly=assembly,
            auto_approve=self.auto_approve.value if self.auto_approve else None,
            timeout=timeout,
            record_prompts=record_prompts,
            plan_budget_usd=plan_budget_usd,
            budget=self.budget,
            replan=replan,
            max_replans=max_replans,
            mode=mode,
            max_turns=max_turns,
            context_budget=context_budget,
            max_depth=max_depth,
            router=router_kind,
            router_fallback=self.router.fallback if self.router else None,
            router_min_score=router_min_score,
            embedder=embedder if isinstance(embedder, str) else None,
            memory=memory,
            memory_limit=memory_limit,
            memory_top_k=memory_top_k,
        )
        #: With memory on, where outputs are remembered and recalled (docs/memory.md).
        self.memory = (
            Memory(self.store, self.embedder, limit=memory_limit, top_k=memory_top_k)
            if memory
            else None
        )

    @classmethod
    def from_settings(
        cls,
        settings: RunSettings,
        workers: Registry,
        **objects: Any,
    ) -> Orchestrator:
        """The orchestrator ``settings`` describe (a run's recorded ones, or the CLI's), for
        ``workers`` (the team ``settings.team`` names), with ``objects`` (``store``,
        ``observers``, ``approve``, an ``embedder`` or ``router`` instance...) that are not
        settings."""
        orchestrator = cls(
            workers,
            model=settings.model,
            planner_model=settings.planner_model,
            concurrency=settings.concurrency,
            max_tasks=settings.max_tasks,
            max_plan_retries=settings.max_plan_retries,
            validator=settings.validator,
            max_revisions=settings.max_revisions,
            assembly=settings.assembly,
            auto_approve=settings.auto_approve,
            timeout=settings.timeout,
            record_prompts=settings.record_prompts,
            plan_budget_usd=settings.plan_budget_usd,
            budget=settings.budget,
            replan=settings.replan,
            max_replans=settings.max_replans,
            mode=settings.mode,
            max_turns=settings.max_turns,
            context_budget=settings.context_budget,
            max_depth=settings.max_depth,
            router=objects.pop("router", settings.router),
            router_fallback=settings.router_fallback,
            router_min_score=settings.router_min_score,
            embedder=objects.pop("embedder", settings.embedder),
            memory=settings.memory,
            memory_limit=settings.memory_limit,
            memory_top_k=settings.memory_top_k,
            **objects,
        )
        kept = {"team", "builtin_tools", "tool_root"}  # what the caller built ``workers`` from
        orchestrator.config = orchestrator.config.model_copy(
            update={key: getattr(settings, key) for key in kept}
        )
        return orchestrator

    @property
    def settings(self) -> dict[str, Any]:
        """The settings recorded with each run, as plain JSON (``config`` is the typed one)."""
        return self.config.recorded()

    def deps(self) -> RunDeps:
        """What an execution of this orchestrator runs with."""
        return RunDeps(
            settings=self.config,
            registry=self.registry,
            models=self.models,
            planner_model=self.planner_model,
            validator=self.validator,
            store=self.store,
            approve=self.approve,
            auto_approve=self.auto_approve,
            retry=self.retry,
            observers=self.observers,
            budget=self.budget,
            plan_budget_usd=self.plan_budget_usd,
            lease_seconds=self.lease_seconds,
            started_write_window=self.started_write_window,
            timer=self.timer,
            estimator=self.estimator,
            router=self.router,
            memory=self.memory,
        )

    def _build_models(self) -> None:
        """Build every model a run may call, now: an unknown model name or a missing API key
        is a ``ConfigError`` here, before any run is recorded, never a run that dies later.
        (Building is cheap: the local model loads its weights at its first call.)"""
        planner = self.planner_model if isinstance(self.planner_model, str) else None
        names = [None, planner]
        for worker in self.registry:
            names += [worker.model, worker.fallback_model]
        #: The names of every model a run may call, its teams' too (a cost budget needs
        #: their prices).
        self._model_names = [self.models.get(name).name for name in dict.fromkeys(names)]
        if isinstance(self.planner_model, Model):
            self._model_names.append(self.planner_model.name)
        self._model_names += team_model_names(self.registry, self.models)

    @property
    def model_names(self) -> list[str]:
        """Every model a run of this orchestrator may call, its nested teams' included."""
        return list(self._model_names)

    # --- runs --------------------------------------------------------------------------

    async def plan(self, request: str, on_event: OnEvent | None = None) -> tuple[Plan, Usage]:
        """A validated plan for ``request`` and the tokens it cost, without running it."""
        return await make_plan(self.deps(), "", request, on_event or _ignore)

    async def estimate(self, plan: Plan, request: str = "") -> PlanEstimate:
        """What ``plan`` will most likely cost and take, per task and in total, before any
        of it is spent: from the ledger's history of each worker on its model, typical
        values where there is none (``foreman.engine.estimate`` says which, and how)."""
        return (await self.estimator()).plan(plan, request)

    async def estimator(self) -> Estimator:
        """An ``Estimator`` for this team and these settings, with the store's history."""
        history = History(await self.store.recent_calls(HISTORY_CALLS))
        planner = self.planner_model
        return Estimator(
            self.registry,
            history,
            model_of=lambda name: self.models.get(name).name,
            planner_model=(
                planner if isinstance(planner, Model) else self.models.get(planner)
            ).name,
            default_model=self.models.default.name,
            validator=self.validator,
            synthesis=self.assembly == "synthesis",
            concurrency=self.concurrency,
            max_tasks=self.max_tasks,
        )

    async def run(
        self, request: str, *, plan: Plan | None = None, on_event: OnEvent | None = None
    ) -> RunResult:
        """Run ``request`` end to end (or execute a given ``plan``) and return the result.

        ``on_event`` is called with every event as it happens. An aborted run, or one paused
        for approvals, returns with that ``status``; ``resume`` continues it. A run that
        cannot go on (no valid plan, provider down, an ``on_event`` that raised) is
        recorded as ``failed``, with its error and what it spent, ``run_finished`` is its
        last event, and the error (``PlanError``, a ``ModelError``...) is raised.
        """
        return await self._start(request, plan, on_event or _ignore)

    def stream(self, request: str, *, plan: Plan | None = None) -> AsyncIterator[Event]:
        """Yield typed events as the run happens; the last one is ``RunFinished``, also for
        a run that failed (whose error is raised once that event is yielded).

        Leaving the loop early (or cancelling) cancels the run's running tasks and marks
        the run interrupted.
        """
        return events_of(lambda emit: self._start(request, plan, emit))

    async def resume(
        self, run_id: str, *, budget: Budget | None = None, on_event: OnEvent | None = None
    ) -> RunResult:
        """Continue a run that crashed, was interrupted, aborted, paused for approval or
        stopped at its budget.

        Tasks that succeeded are never executed again; the others are. ``budget`` replaces
        the orchestrator's (raise a limit the run reached) and becomes the run's own: it is
        recorded in the run's settings, which ``foreman resume`` rebuilds the run from. It
        counts what every execution of the run spent, and the seconds they ran. Raises
        ``UnknownRunError``, ``RunFinishedError``, or ``RunLockedError`` when another live
        process is executing the run.
        """
        record = await self.store.get_run(run_id)
        refuse_finished(record)
        return await self._resume(self.deps(), record, budget, on_event or _ignore)

    async def run_child(self, child: ChildRun, *, plan: Plan | None = None) -> RunResult:
        """Carry out a parent run's task as the nested run ``child`` describes (the
        ``Team`` protocol: ``foreman.workers.nested``): in the parent's store, with the
        parent's approval callback and auto-approval unless this orchestrator has its
        own. A nested run stored already is continued where it was (a resumed parent),
        or, if it ended, its result is read back: it never starts over. ``plan`` is run
        as given (a pattern's), as with ``run``."""
        deps = replace(
            self.deps(),
            settings=self.config.model_copy(update={"max_depth": child.parent.settings.max_depth}),
            store=child.store,
            approve=self.approve or child.parent.approve,
            auto_approve=self.auto_approve or child.parent.auto_approve,
            depth=child.depth,
            parent_meter=child.meter,
            parent_ledger=child.ledger,
        )
        budget = within(self.budget, child.budget)  # its own limits, the parent's on_limit
        try:
            record = await child.store.get_run(child.run_id)
        except UnknownRunError:
            record = None
        if record is None:
            await child.store.create_run(child.record(deps.settings.recorded()))
            if plan is not None:
                check_given_plan(self.registry, plan)
                await child.store.save_plan(child.run_id, plan)
            state = RunState(run_id=child.run_id, request=child.request, plan=plan, budget=budget)
            return await execute(deps, state, child.on_event)
        if record.status.final:
            return await stored_result(child.store, record)
        return await self._resume(deps, record, budget, child.on_event, keep=False)

    async def _resume(
        self,
        deps: RunDeps,
        record: RunRecord,
        budget: Budget | None,
        on_event: OnEvent,
        *,
        keep: bool = True,
    ) -> RunResult:
        """Continue the stored run ``record`` with ``deps`` (see ``resume``); ``keep``: a
        given budget becomes the run's own (a nested run's share is for this time only)."""
        store, run_id, given = deps.store, record.run_id, budget
        budget = budget if budget is not None else self.budget
        if given is not None and self.config.plan_budget_usd is None:  # not set on its own:
            deps = replace(deps, plan_budget_usd=given.max_cost_usd)  # the run's cost limit
        tasks = await store.load_tasks(run_id)
        before, earlier = await books_before(store, record, tasks)
        nested = await nested_books(store, run_id)
        # Every model the run spent on without a price, its nested runs' too: a cost limit
        # cannot count what they spent.
        spent = [model for books in (before, *nested.values()) for model in books.unpriced]
        check_priced(budget, [*self._model_names, *spent])
        if keep and given is not None and record.settings.get("budget") != given.model_dump():
            await record_budget(store, record, given)
        timed = budget is not None and budget.max_seconds is not None
        state = RunState(
            run_id=run_id,
            request=record.request,
            plan=record.plan,
            plan_usage=record.plan_usage,
            completed={k: v for k, v in tasks.items() if v.succeeded},
            resumed=True,
            before=before,
            budget=budget,
            seconds_before=executed_seconds(await store.load_events(run_id)) if timed else 0,
            earlier_calls=earlier,
            nested=nested,
        )
        # Driven as it was started, whatever this orchestrator's own mode.
        mode = record.settings.get("mode") or "plan"
        if mode != deps.settings.mode:
            deps = replace(deps, settings=deps.settings.model_copy(update={"mode": mode}))
        return await execute(deps, state, on_event)

    async def replay(self, run_id: str, task_id: str, *, model: str | None = None) -> TaskResult:
        """Run one task's worker again on its recorded input, for debugging.

        The run stays as it was, but the replay's calls join its ledger (they were paid
        for), with purpose ``replay``. ``model`` tries another model. The
        worker's current definition (prompt, schema) is used, which is the point: change
        a prompt, replay, compare. Raises ``RunLockedError`` while the run is running.
        """
        return await replay_task(self.deps(), run_id, task_id, model=model)

    def run_sync(self, request: str, **kwargs: Any) -> RunResult:
        """``run`` for scripts and notebooks without an event loop of their own."""

        async def run_and_close() -> RunResult:
            async with self:
                return await self.run(request, **kwargs)

        return asyncio.run(run_and_close())

    async def aclose(self) -> None:
        """Close model clients, tool sources (MCP servers) and the store; ``async with
        orchestrator:`` does it for you."""
        await self.registry.tools.aclose()
        await self.models.aclose()
        await self.embedder.aclose()
        await self.store.aclose()

    async def __aenter__(self) -> Orchestrator:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- internals -------------------------------------------------------------------

    def _start(self, request: str, plan: Plan | None, on_event: OnEvent) -> Awaitable[RunResult]:
        if plan is not None:
            if self.config.mode == "delegate":
                raise ConfigError("A given plan runs in mode 'plan'; mode 'delegate' plans itself.")
            check_given_plan(self.registry, plan)
        state = RunState(run_id=new_run_id(), request=request, plan=plan, budget=self.budget)

        async def go() -> RunResult:
            await self.store.create_run(
                RunRecord(run_id=state.run_id, request=request, settings=self.settings)
            )
            if plan is not None:
                await self.store.save_plan(state.run_id, plan)
            return await execute(self.deps(), state, on_event)

        return go()


def new_run_id() -> str:
    """Sortable by time, unique enough to never collide in one store."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def _with_logging(observers: Iterable[Observer]) -> list[Observer]:
    """``observers``, after a default ``LoggingObserver`` unless one was given."""
    given = list(observers)
    if any(isinstance(observer, LoggingObserver) for observer in given):
        return given
    return [LoggingObserver(), *given]


def _name(model: Model | str | None) -> str | None:
    return model.name if isinstance(model, Model) else model


def _ignore(_: Event) -> None:
    return None


def refuse_finished(record: RunRecord) -> None:
    """``RunFinishedError`` for a run that already finished: nothing to resume."""
    if record.status.final:
        raise RunFinishedError(
            f"Run {record.run_id} already finished ({record.status.value}); nothing to resume."
            f" `foreman show {record.run_id}` shows it."
        )
