"""Routing inside a run: the router's choice replaces the planner's, task by task.

In the planned mode the plan is routed once, before it is stored: a resumed run reads the
routed plan back and never routes again. A task keeps the planner's worker when it gives
``args`` (a router reads only text) or when a ``for_each`` reads its structured output.
In the delegating mode the orchestrator gets one generic ``delegate`` tool instead of one
tool per worker, and the router picks the worker of each delegation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from foreman.embeddings.base import Embedder, embedder_of
from foreman.engine.calls import retried
from foreman.engine.together import all_settled
from foreman.errors import ConfigError
from foreman.events import TaskRouted
from foreman.ledger.records import CallPurpose
from foreman.models.base import Model, ToolCall, ToolSpec
from foreman.models.pool import ModelPool
from foreman.models.retry import RetryPolicy
from foreman.plan.revise import Revision
from foreman.plan.schema import Plan, Task
from foreman.plan.validate import validate_plan
from foreman.routing import EmbeddingRouter, LLMRouter, Route, Router, RoutingError
from foreman.routing.base import ROUTER_KINDS, RouterKind
from foreman.routing.embedding import DEFAULT_MIN_SCORE
from foreman.workers.registry import Registry

if TYPE_CHECKING:
    from foreman.engine.lifecycle import Execution

#: The delegating orchestrator's one tool when a router picks the workers.
DELEGATE_TOOL = "delegate"


def build_router(
    kind: str | None,
    registry: Registry,
    *,
    models: ModelPool,
    model: Model | str | None,
    embedder: Embedder | str | None,
    fallback: str | None,
    min_score: float | None,
    retry: RetryPolicy | None,
    timeout: float | None,
) -> Router | None:
    """The router ``kind`` names (``None`` for ``planner``); ``model`` is the LLM
    router's (the planner's), ``embedder`` the embedding router's."""
    if kind in (None, "planner"):
        return None
    if kind == "llm":
        chosen = model if isinstance(model, Model) else models.get(model)
        return LLMRouter(registry, chosen, fallback=fallback, retry=retry, timeout=timeout)
    if kind == "embedding":
        if not isinstance(embedder, Embedder):
            embedder = embedder_of(embedder)
        score = DEFAULT_MIN_SCORE if min_score is None else min_score
        return EmbeddingRouter(registry, embedder, fallback=fallback, min_score=score)
    raise ConfigError(f"router must be 'planner', 'llm' or 'embedding', not {kind!r}.")


def resolve_router(
    registry: Registry,
    router: Router | str | None,
    fallback: str | None,
    min_score: float | None,
    embedder: Embedder | str | None,
    **build: Any,
) -> tuple[Router | None, RouterKind | None]:
    """The router an orchestrator's arguments ask for, a team file's ``router:`` and
    ``embedder:`` filling what they leave out, and the kind recorded with its runs
    (``None`` for a custom ``Router``). ``build``: ``build_router``'s other arguments."""
    if isinstance(router, Router):
        return router, None
    team = registry.router
    kind = router or (team.kind if team else None) or "planner"
    if kind not in ROUTER_KINDS:
        raise ConfigError(f"router must be 'planner', 'llm' or 'embedding', not {kind!r}.")
    if team is not None and team.kind == kind:
        fallback = fallback if fallback is not None else team.fallback
        min_score = min_score if min_score is not None else team.min_score
    chosen = build_router(
        kind,
        registry,
        embedder=embedder if embedder is not None else registry.embedder,
        fallback=fallback,
        min_score=min_score,
        **build,
    )
    return chosen, kind  # type: ignore[return-value]


async def route_plan(run: Execution, plan: Plan) -> Plan:
    """``plan`` with each routable task's worker chosen by the run's router; the plan as
    it was when there is no router, or when the routed one would not validate."""
    router, deps = run.deps.router, run.deps
    if router is None:
        return plan
    structured = {task.for_each.split(".", 1)[0] for task in plan.tasks if task.for_each}
    routable = [t for t in plan.tasks if t.args is None and t.id not in structured]
    routes = await _routes(run, router, routable)
    chosen = {task.id: route for task, route in zip(routable, routes, strict=True)}
    tasks = [
        task.model_copy(update={"worker": chosen[task.id].worker}) if task.id in chosen else task
        for task in plan.tasks
    ]
    routed = plan.model_copy(update={"tasks": tasks})
    if validate_plan(routed, deps.registry, max_tasks=max(len(tasks), deps.settings.max_tasks)):
        return plan
    for task in routable:
        run.emit(_event(run.run_id, task.id, chosen[task.id], planned=task.worker))
    return routed


async def route_revision(run: Execution, revision: Revision) -> tuple[Revision, list[TaskRouted]]:
    """``revision`` with the workers of the tasks it adds or changes chosen by the run's
    router (same rules as ``route_plan``), and the events to announce if it is applied."""
    router = run.deps.router
    tasks = [*revision.add, *revision.change]
    if router is None or not tasks:
        return revision, []
    plan = run.state.plan
    structured = {
        t.for_each.split(".", 1)[0] for t in [*(plan.tasks if plan else []), *tasks] if t.for_each
    }
    routable = [t for t in tasks if t.args is None and t.id not in structured]
    routes = await _routes(run, router, routable)
    chosen = {task.id: route for task, route in zip(routable, routes, strict=True)}

    def routed(batch: list[Task]) -> list[Task]:
        return [
            t.model_copy(update={"worker": chosen[t.id].worker}) if t.id in chosen else t
            for t in batch
        ]

    events = [_event(run.run_id, t.id, chosen[t.id], planned=t.worker) for t in routable]
    update = {"add": routed(revision.add), "change": routed(revision.change)}
    return revision.model_copy(update=update), events


async def _routes(run: Execution, router: Router, tasks: list[Task]) -> list[Route]:
    if isinstance(router, EmbeddingRouter):  # one embedding call for the whole plan
        return await router.route_many(
            [t.instructions for t in tasks], defaults=[t.worker for t in tasks]
        )
    return await all_settled(
        *(_route_one(run, router, t.instructions, default=t.worker) for t in tasks)
    )


async def _route_one(run: Execution, router: Router, text: str, *, default: str | None) -> Route:
    return await router.route(
        text,
        default=default,
        scope=run.journal.ledger.scope(CallPurpose.route),
        on_retry=retried(run.emit, run.run_id, "route"),
    )


def delegate_tool() -> ToolSpec:
    """The generic tool a routed delegating orchestrator delegates with."""
    return ToolSpec(
        name=DELEGATE_TOOL,
        description="Hand a self-contained subtask to the best-suited worker (chosen for "
        "you from the task's wording) and get its result back.",
        parameters={
            "type": "object",
            "properties": {
                "instructions": {
                    "type": "string",
                    "description": "What the worker must do, complete and specific.",
                },
                "inputs": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Ids of earlier delegations whose results it needs.",
                },
            },
            "required": ["instructions"],
        },
    )


async def routed_calls(run: Execution, calls: list[ToolCall], ids: list[str]) -> list[ToolCall]:
    """``calls`` with each ``delegate`` call renamed to the worker the router chose
    (``ids``: the delegation id each call will have). A call whose instructions are not
    text, or that no worker matches, keeps its name and is refused as usual."""
    router = run.deps.router
    assert router is not None

    async def one(call: ToolCall, task_id: str) -> ToolCall:
        text = call.arguments.get("instructions")
        if call.name != DELEGATE_TOOL or not isinstance(text, str) or not text.strip():
            return call
        try:
            route = await _route_one(run, router, text, default=None)
        except RoutingError:
            return call
        run.emit(_event(run.run_id, task_id, route, planned=None))
        return call.model_copy(update={"name": route.worker})

    return await all_settled(*(one(c, i) for c, i in zip(calls, ids, strict=True)))


def _event(run_id: str, task_id: str, route: Route, *, planned: str | None) -> TaskRouted:
    return TaskRouted(
        run_id=run_id,
        task_id=task_id,
        worker=route.worker,
        router=route.router,
        score=route.score,
        fallback=route.fallback,
        planned_worker=planned,
    )
