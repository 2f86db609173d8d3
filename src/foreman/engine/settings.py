"""What a run is configured with, and what it runs with.

``RunSettings`` is the typed, frozen record of a run's configuration: recorded with the run
(``RunRecord.settings``), so ``foreman resume`` rebuilds the same orchestrator, and the one
place the CLI takes its defaults from. ``RunDeps`` is what an execution needs besides its
state: the settings plus the live objects built from them (team, models, store, approval
callback, observers, clock). Drivers get ``RunDeps``, never the ``Orchestrator``, so the
engine's stages depend on data, not on the public facade that calls them (and a durable
backend can build them without one).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from foreman.engine.assembly import AssemblyMethod
from foreman.ledger.budget import Budget, BudgetMeter
from foreman.ledger.recorder import CallLedger
from foreman.models.base import Model
from foreman.models.pool import ModelPool
from foreman.models.retry import RetryPolicy
from foreman.routing.base import Router, RouterKind
from foreman.store.base import Store
from foreman.tracing.observer import Observers
from foreman.workers.nested import MAX_DEPTH
from foreman.workers.registry import Registry, RunMode
from foreman.workers.spec import RiskLevel, Worker

#: ``never`` (the default: one plan), ``on-hint`` (when a worker's result asks for it),
#: ``always`` (after every settled task).
ReplanPolicy = Literal["never", "on-hint", "always"]

if TYPE_CHECKING:
    from foreman.engine.approvals import ApprovalCallback
    from foreman.engine.estimate import Estimator
    from foreman.engine.memory import Memory


class RunSettings(BaseModel):
    """A run's configuration as recorded with it. Defaults here are the CLI's defaults.

    Keys a newer foreman added are ignored when an older record is read, and keys an older
    record lacks take their defaults, so every stored run can be resumed.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    #: The default model: planner, synthesis and every worker that names none.
    model: str | None = None
    planner_model: str | None = None
    concurrency: int | None = 8
    max_tasks: int = 8
    max_plan_retries: int = 2
    validator: str | None = None
    max_revisions: int = 1
    assembly: AssemblyMethod = "synthesis"
    auto_approve: str | None = None
    timeout: float | None = None
    record_prompts: bool = True
    #: As given; ``RunDeps.plan_budget_usd`` is the effective one.
    plan_budget_usd: float | None = None
    budget: Budget | None = None
    #: The team file the CLI loaded the workers from (``None``: the default team).
    team: str | None = None
    #: When the orchestrator reconsiders the plan as tasks settle (docs/replanning.md).
    replan: ReplanPolicy = "never"
    #: The most plan revisions a run makes (over all its executions).
    max_replans: int = Field(3, ge=0)
    #: How the run is driven (``engine.drivers``): ``plan`` or ``delegate``. ``None``: the
    #: team's ``mode``, else ``plan``; a run records the mode it resolved to, and keeps it.
    mode: RunMode | None = None
    #: Turns a delegating orchestrator may take (the last one must answer).
    max_turns: int = 8
    #: Tokens of results the orchestrator reads before older ones are compacted
    #: (``engine.context``); ``None``: read them whole.
    context_budget: int | None = None
    #: How deep runs may nest (teams as workers, ``foreman.workers.nested``); the
    #: top-level run's limit holds for every run below it.
    max_depth: int = Field(MAX_DEPTH, ge=0)
    #: Who picks each task's worker (docs/routing.md): ``planner`` (its own choice),
    #: ``llm`` or ``embedding``. ``None``: the team's ``router:``, else ``planner``; a run
    #: records the router it resolved to, so a resumed run routes alike.
    router: RouterKind | None = None
    #: The worker a router sends a task no worker confidently matches.
    router_fallback: str | None = None
    #: The embedding router's least confident similarity (``None``: its default).
    router_min_score: float | None = None
    #: The embedder of the embedding router and of memory: ``local`` or ``openai:MODEL``.
    embedder: str | None = None
    #: Remember workers' outputs and show later workers the relevant ones (docs/memory.md).
    #: ``None``: the team's ``memory:``, else off.
    memory: bool | None = None
    #: Most memories the store keeps (the oldest go), and how many a worker is shown.
    memory_limit: int | None = Field(None, ge=1)
    memory_top_k: int | None = Field(None, ge=0)
    #: Built-in tools the run enables (``foreman run --allow-tool``), added to the team's
    #: toolbox for the workers that name them; ``tool_root`` is the absolute directory
    #: the file tools and ``shell`` are confined to. A resumed run enables the same.
    builtin_tools: tuple[str, ...] = ()
    tool_root: str | None = None

    def recorded(self) -> dict[str, Any]:
        """The settings as stored with a run (plain JSON)."""
        return self.model_dump(mode="json")


#: The configuration of a run nobody configured: the CLI's option defaults.
DEFAULTS = RunSettings()


@dataclass(frozen=True, slots=True)
class RunDeps:
    """Everything an execution runs with: its settings and the objects built from them."""

    settings: RunSettings
    registry: Registry
    models: ModelPool
    #: The planner: a model given as an instance, or the name ``models`` resolves.
    planner_model: Model | str | None
    validator: Worker | None
    store: Store
    approve: ApprovalCallback | None
    auto_approve: RiskLevel | None
    retry: RetryPolicy | None
    observers: Observers
    #: The run's limits (the team file's when none was given) and the planner's budget.
    budget: Budget | None
    plan_budget_usd: float | None
    lease_seconds: float
    started_write_window: float
    timer: Callable[[], float]
    #: The cost and time estimator of this team, with the store's history.
    estimator: Callable[[], Awaitable[Estimator]]
    #: 0 for a top-level run, 1 for a run nested in one (``engine.nesting``)...
    depth: int = 0
    #: The router choosing each task's worker; ``None``: the planner's choice stands.
    router: Router | None = None
    #: With memory on: where outputs are remembered and recalled (``engine.memory``).
    memory: Memory | None = None
    #: In a nested run: the parent's budget meter, which its spending counts on live.
    parent_meter: BudgetMeter | None = None
    #: ...and its ledger, whose ``stopping`` its calls cut short follow.
    parent_ledger: CallLedger | None = None

    def own_timeout(self, default: float | None = None) -> float | None:
        """Seconds per call of the orchestrator's own calls (planning, synthesis); ``None``
        leaves it to the model's own default (longer for the local model)."""
        timeout = self.settings.timeout
        return timeout if timeout is not None else default

    def planner(self) -> Model:
        model = self.planner_model
        return model if isinstance(model, Model) else self.models.get(model)
