"""Scripting replanning runs: a model that plans, revises (from the state it is shown) and
answers tasks by their instructions."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from foreman import Orchestrator
from foreman.engine.context import COMPACTION_SYSTEM
from foreman.models.base import ModelRequest
from foreman.plan.schema import Plan
from foreman.testing import ScriptedModel
from helpers import Script, is_planner, is_synthesis, worker

#: The revision a test's reviser returns: a dict (sent as JSON) or raw text.
Revise = Callable[[dict[str, Any]], dict[str, Any] | str]

KEEP: dict[str, Any] = {"reason": "fine", "add": [], "change": [], "drop": []}

TEAM = [worker("researcher"), worker("writer"), worker("coder")]


def is_replan(request: ModelRequest) -> bool:
    return "add" in (request.output_schema or {}).get("properties", {})


def shown(request: ModelRequest) -> dict[str, Any]:
    """The state a revision request shows: request, just_finished, plan, results."""
    return json.loads(request.messages[0].content)


def states(message: dict[str, Any]) -> dict[str, str]:
    return {task["id"]: task["state"] for task in message["plan"]}


def add(*tasks: tuple[str, str, list[str]], reason: str = "more work") -> dict[str, Any]:
    """A revision adding ``(id, worker, depends_on)`` tasks whose instructions are ``do <id>``."""
    return {
        "reason": reason,
        "add": [
            {"id": tid, "worker": w, "instructions": f"do {tid}", "depends_on": deps}
            for tid, w, deps in tasks
        ],
        "change": [],
        "drop": [],
    }


def model(
    plan: Plan,
    revise: Revise,
    *,
    tasks: dict[str, Any] | None = None,
    latency: Callable[[ModelRequest], float] | float = 0.0,
) -> ScriptedModel:
    script = Script(plan, tasks=tasks)

    def answer(request: ModelRequest) -> Any:
        if request.system == COMPACTION_SYSTEM:
            return "SUMMARY of the older results"
        if is_replan(request):
            revision = revise(shown(request))
            return revision if isinstance(revision, str) else json.dumps(revision)
        return script(request)

    return ScriptedModel(answer, latency=latency)


def orchestrator(scripted: ScriptedModel, **options: Any) -> Orchestrator:
    options.setdefault("replan", "always")
    options.setdefault("max_replans", 5)
    options.setdefault("assembly", "concat")
    return Orchestrator(TEAM, model=scripted, **options)


def latency(
    by_instructions: dict[str, float], revision: Callable[[], float] | float = 0.0
) -> Callable[[ModelRequest], float]:
    """Seconds per task instructions (0 for the rest), and per revision call."""

    def seconds(request: ModelRequest) -> float:
        if is_replan(request):
            return revision() if callable(revision) else revision
        if is_planner(request) or is_synthesis(request):
            return 0.0
        return by_instructions.get(json.loads(request.messages[0].content)["instructions"], 0.0)

    return seconds


def replan_requests(scripted: ScriptedModel) -> list[ModelRequest]:
    return [r for r in scripted.requests if is_replan(r)]


def worker_calls(scripted: ScriptedModel) -> list[str]:
    """The instructions of every worker call, in order."""
    return [
        json.loads(r.messages[0].content)["instructions"]
        for r in scripted.requests
        if not (is_replan(r) or is_planner(r) or is_synthesis(r) or r.system == COMPACTION_SYSTEM)
    ]
