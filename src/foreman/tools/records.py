"""The tool loop's journal: what the engine stores about each model turn and tool call.

Shared by the engine that writes them, the stores that keep them and the CLI that shows
them, so they live below all three. A tool call is stored ``started`` (durably, before the
tool runs) and ``finished`` (with its result) after: resume reuses a finished call's
result and never silently repeats a call that may have run. A model turn is stored as
soon as it answered, so resume does not ask the model again.
"""

from __future__ import annotations

import hashlib
import time
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from foreman.models.base import ModelResponse

#: Characters of a tool's result kept in a ``tool_finished`` event (the store keeps all).
EXCERPT_CHARS = 500


class ToolCallStatus(StrEnum):
    started = "started"
    finished = "finished"


class ToolOutcome(StrEnum):
    """How a tool call ended: ``ok``; ``error`` (the tool failed or timed out, the model
    was told why); ``refused`` (outside the worker's allow-list, or unknown: never run);
    ``rejected`` (a person said no: never run)."""

    ok = "ok"
    error = "error"
    refused = "refused"
    rejected = "rejected"


class ToolCallRecord(BaseModel):
    """One tool call of a task's tool loop, as the store keeps it.

    ``seq`` numbers the task's tool calls from 1 in the order the model asked for them;
    ``key`` (``<task>#<seq>``) names the call in approvals (``foreman approve RUN KEY``).
    """

    run_id: str
    task_id: str
    seq: int = Field(ge=1)
    loop: int = Field(0, description="Which tool loop of the task: 0, then fallbacks, revisions.")
    turn: int = Field(ge=1, description="The model turn that asked for the call.")
    index: int = Field(0, description="Its place among that turn's calls.")
    call_id: str = Field(description="The model's id for the call.")
    tool: str
    worker: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str
    status: ToolCallStatus = ToolCallStatus.started
    outcome: ToolOutcome | None = None
    result: str | None = Field(None, description="What the model was given back.")
    latency: float | None = Field(None, description="Seconds the tool ran; None: never ran.")
    started_at: float = Field(default_factory=time.time)
    finished_at: float | None = None

    @property
    def key(self) -> str:
        return call_key(self.task_id, self.seq)


class ToolTurnRecord(BaseModel):
    """One answered model turn of a task's tool loop (its text and tool calls)."""

    run_id: str
    task_id: str
    loop: int = 0
    turn: int = Field(ge=1)
    response: ModelResponse
    input_digest: str | None = Field(
        None,
        description="Digest of the system prompt and input that asked this turn: a task "
        "run again with another input (replanned, a dependency redone) asks anew.",
    )
    at: float = Field(default_factory=time.time)


def input_digest(system: str, user: str) -> str:
    """Names what a tool loop was asked, for ``ToolTurnRecord.input_digest``."""
    return hashlib.sha256(f"{system}\0{user}".encode()).hexdigest()


def call_key(task_id: str, seq: int) -> str:
    """How approvals name one tool call of a task: ``research#2``."""
    return f"{task_id}#{seq}"


def idempotency_key(run_id: str, task_id: str, seq: int) -> str:
    """The same for every (re)issue of one call of one task of one run; unique otherwise."""
    return f"{run_id}:{task_id}:{seq}"


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """A bounded piece of a tool's result, for events."""
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more]"
