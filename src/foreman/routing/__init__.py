"""Routers: who does a task, chosen beside the planner (docs/routing.md).

``planner`` (the default) keeps the worker the planner or delegating orchestrator named.
``LLMRouter`` asks a model once per task, from the workers' descriptions;
``EmbeddingRouter`` makes no model call at all: it compares the task's embedding with the
workers' descriptions and examples, in milliseconds. Both fall back to a ``fallback``
worker when no worker is a confident match.
"""

from foreman.routing.base import ROUTER_KINDS, Route, Router, RouterKind, RoutingError
from foreman.routing.embedding import DEFAULT_MIN_SCORE, EmbeddingRouter
from foreman.routing.llm import LLMRouter

__all__ = [
    "DEFAULT_MIN_SCORE",
    "ROUTER_KINDS",
    "EmbeddingRouter",
    "LLMRouter",
    "Route",
    "Router",
    "RouterKind",
    "RoutingError",
]
