"""Teams as workers: an orchestrator, a pattern or a team file registered as one worker of
another orchestrator (top level -> middle -> workers).

A ``TeamWorker`` is routed to like any worker: the planner sees its name and description,
its ``risk`` asks for approval before the whole team starts. What differs is how its task
runs: as a nested run of ``team`` in the parent's store (``foreman.engine.nesting``),
durable, resumable, its events and cost carried up to the parent.

``team`` is anything with ``run_child(child) -> RunResult`` (the ``Team`` protocol: an
``Orchestrator`` has it); a ``PlannedTeam`` (``workers()`` and ``plan_for(request)``: a
pipeline or a fan-out), whose plan the engine runs; or a ``TeamFile``, the team a team
file's ``team:`` entry names. The last two run with the parent's settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import Field, field_validator

from foreman.errors import ConfigError
from foreman.workers.spec import Worker

if TYPE_CHECKING:
    from foreman.engine.nesting import ChildRun
    from foreman.plan.schema import Plan
    from foreman.results import RunResult
    from foreman.workers.registry import Registry

#: How deep runs may nest by default: a top-level run's children are at depth 1.
MAX_DEPTH = 3


@runtime_checkable
class Team(Protocol):
    """What can carry out a parent's task as a nested run.

    ``run_child`` runs ``child.request`` as the run ``child.run_id`` in ``child.store``
    (the parent's), linked to ``child.parent_run_id`` and ``child.parent_task_id``; when
    that run exists already it continues it (a resumed parent) instead of starting anew.
    ``Orchestrator.run_child`` does all of this; a pattern can delegate to it with its plan.
    """

    async def run_child(self, child: ChildRun) -> RunResult: ...


@runtime_checkable
class PlannedTeam(Protocol):
    """A team that is a plan for each request over its own workers (a pipeline, a
    fan-out): the engine runs its plan as the nested run, with the parent's settings."""

    def workers(self) -> list[Worker]: ...

    def plan_for(self, request: str) -> Plan: ...


@dataclass(frozen=True, slots=True)
class TeamFile:
    """A team loaded from a team file, to run as a nested run with the parent's settings
    (models, limits, approval policy): a team file says who the workers are, not how a run
    is configured."""

    path: Path
    registry: Registry


class TeamWorker(Worker):
    """A worker whose tasks are nested runs of ``team``.

    >>> review = Orchestrator([checker, publisher], model="openai:gpt-5.4-mini")
    >>> top = Orchestrator([researcher, TeamWorker(name="review", description="...",
    ...     team=review)])

    ``system_prompt`` is unused (the team has its own prompts); ``model`` names the default
    model of a ``TeamFile`` team (the parent's when unset).
    """

    system_prompt: str = ""
    team: Any = Field(exclude=True, description="A ``Team``, a ``PlannedTeam`` or a ``TeamFile``.")

    @field_validator("team")
    @classmethod
    def _runs_children(cls, team: Any) -> Any:
        if not isinstance(team, TeamFile | Team | PlannedTeam):
            raise ValueError(
                "must be an Orchestrator, a pattern (workers() and plan_for(request)) or "
                f"another object with run_child(child), not {type(team).__name__}"
            )
        return team


def check_no_cycle(path: Path, within: tuple[Path, ...]) -> tuple[Path, ...]:
    """``within`` (the team files being loaded, outermost first) and ``path``; a
    ``ConfigError`` when ``path`` is one of them: the teams would nest without end."""
    resolved = path.resolve()
    if resolved in within:
        chain = " -> ".join(str(file) for file in (*within[within.index(resolved) :], resolved))
        raise ConfigError(f"Team files name each other in a cycle: {chain}.")
    return (*within, resolved)


def worker_of(
    entry: Any, path: Path, within: tuple[Path, ...], load: Callable[..., Registry]
) -> Worker:
    """A team file's worker entry: a ``Worker``, or with ``team: FILE`` (relative to the
    file that names it) a ``TeamWorker`` of the team ``load`` reads from FILE."""
    if not (isinstance(entry, dict) and "team" in entry):
        return Worker.model_validate(entry)
    named = entry["team"]
    if not isinstance(named, str) or not named.strip():  # '' would read the folder
        raise ConfigError(f"Team file {path}: 'team' must be the path of a team file.")
    file = path.parent / named
    team = TeamFile(file, load(file, _within=within))
    return TeamWorker.model_validate({**entry, "team": team})
