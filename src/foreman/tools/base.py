"""What a tool is: a named action a worker's model may ask for, with a JSON-schema contract.

Tools sit below workers: a worker names the tools it may use (its allow-list) and the
engine looks them up in the registry's ``Toolbox``. A tool is stateless from the engine's
point of view; everything a call needs arrives in its arguments and its ``ToolContext``,
which carries the call's idempotency key so a tool with side effects can deduplicate a
call that resume had to repeat.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from foreman.models.base import ToolSpec


class RiskLevel(StrEnum):
    """How much a person must be involved before a worker runs, or a tool is called."""

    low = "low"
    medium = "medium"
    high = "high"


@dataclass(frozen=True)
class ToolContext:
    """Who is calling, and the key that names this call across crashes and resumes.

    ``idempotency_key`` is the same every time the engine (re)issues one tool call of one
    task, in this process or after a resume; it differs between calls. A tool that
    changes the world passes it on (as an ``Idempotency-Key`` header, a row's unique key)
    so a repeated call does nothing twice.
    """

    run_id: str
    task_id: str
    worker: str
    call_id: str
    idempotency_key: str


class Tool(ABC):
    """An action with a name, a description, a JSON schema for its arguments and a risk.

    ``risk`` goes through the same approval gate as a risky worker: a ``high`` tool call
    always waits for a person's decision on its exact arguments. ``idempotent`` declares
    that running a call twice does no harm: after a crash during such a call, resume
    repeats it (same idempotency key) instead of asking a person.
    """

    name: str
    description: str = ""
    parameters: dict[str, Any]
    risk: RiskLevel = RiskLevel.low
    idempotent: bool = False
    #: Seconds one call may run before the model is told it timed out.
    timeout: float = 120.0

    @abstractmethod
    async def call(self, arguments: dict[str, Any], context: ToolContext) -> str:
        """Run one call and return its result as text for the model.

        Arguments come straight from the model: validate them and raise
        ``foreman.errors.ToolError`` (with a message the model can act on) when they are
        wrong. Must not block the event loop (run blocking work in a thread).
        """

    def spec(self) -> ToolSpec:
        """How the tool is described to a model."""
        return ToolSpec(name=self.name, description=self.description, parameters=self.parameters)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} risk={self.risk.value}>"


class ToolSource(ABC):
    """Where tools come from that are only known once opened: an MCP server, say.

    ``open`` starts or connects (idempotent) and returns the source's tools; ``aclose``
    stops it. The toolbox opens a source each time a run needs its tools: one open
    already answers at once; one whose server died since starts it again.
    """

    name: str

    @abstractmethod
    async def open(self) -> list[Tool]: ...

    async def aclose(self) -> None:  # noqa: B027 - sources without resources need nothing
        """Stop the server or close the connection; safe to call more than once."""
