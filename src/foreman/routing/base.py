"""What every router is: a task's text in, a worker's name (and how sure) out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal, get_args

from pydantic import BaseModel, Field

from foreman.errors import ForemanError, UnknownWorkerError
from foreman.models.retry import CallLog, OnRetry
from foreman.workers.registry import Registry
from foreman.workers.spec import Worker

#: ``planner``: the planner's own choice; ``llm`` and ``embedding``: a router's.
RouterKind = Literal["planner", "llm", "embedding"]
ROUTER_KINDS: tuple[str, ...] = get_args(RouterKind)


class RoutingError(ForemanError):
    """No worker could be chosen: the router was unsure or failed, with no fallback."""


class Route(BaseModel):
    """Where a task goes, who decided, and how sure it was."""

    worker: str
    router: str
    score: float | None = Field(
        None, description="The embedding router's cosine similarity; None for the LLM's."
    )
    fallback: bool = Field(False, description="No worker was a confident match.")


class Router(ABC):
    """Chooses a worker for a task among the registry's ``candidates``.

    ``fallback`` is the worker a task goes to when no worker is a confident match (or the
    router itself failed); without one, the caller's ``default`` (the planner's choice)
    is kept, and with neither the best match is taken or a ``RoutingError`` raised.
    """

    #: What ``Route.router`` and the ``task_routed`` event say.
    kind: str

    def __init__(self, registry: Registry, *, fallback: str | None = None) -> None:
        if fallback is not None and fallback not in registry:
            raise UnknownWorkerError(
                f"The router's fallback {fallback!r} is not a worker; known workers: "
                f"{', '.join(registry.names())}."
            )
        self.registry = registry
        self.fallback = fallback

    def candidates(self) -> list[Worker]:
        """Workers a task can be routed to: those whose tasks need no ``args`` (a router
        reads only a task's text, so it cannot give a worker's input schema its fields)."""
        return [worker for worker in self.registry if worker.input_schema is None]

    @abstractmethod
    async def route(
        self,
        task: str,
        *,
        default: str | None = None,
        scope: CallLog | None = None,
        on_retry: OnRetry | None = None,
    ) -> Route:
        """The worker for ``task`` (its instructions); ``scope`` records model calls."""

    def unsure(self, best: str | None, default: str | None, score: float | None) -> Route:
        """Where a task goes when no worker is a confident match: the fallback, else the
        caller's default, else the best match if there is one."""
        if self.fallback is not None:
            return Route(worker=self.fallback, router=self.kind, score=score, fallback=True)
        chosen = default or best
        if chosen is None:
            raise RoutingError(
                f"The {self.kind} router found no worker for the task, and has no fallback "
                "worker (--router-fallback)."
            )
        return Route(worker=chosen, router=self.kind, score=score, fallback=True)
