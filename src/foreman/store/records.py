"""The records a store keeps about runs: the run, its summary, approvals, the lease
holder and a checkpoint. Shared by every store and by the engine that writes them."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from foreman.ledger.budget import limit_in
from foreman.models.base import Usage
from foreman.plan.revise import PlanChanges
from foreman.plan.schema import Plan
from foreman.results import RunStatus, TaskResult
from foreman.workers.spec import RiskLevel


class RunRecord(BaseModel):
    """A run as stored: what was asked, how, and where it stands."""

    run_id: str
    request: str
    status: RunStatus = RunStatus.running
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Options the run started with, reused on resume."
    )
    plan: Plan | None = None
    plan_version: int = 0
    plan_usage: Usage = Field(default_factory=Usage, description="What planning cost.")
    answer: str | None = None
    error: str | None = None
    usage: Usage = Field(
        default_factory=Usage,
        description="The sum of the run's ledger and of its nested runs' ledgers.",
    )
    cost_usd: float | None = Field(
        None, description="US dollars, each call at its own model's price; None if unknown."
    )
    unpriced: list[str] = Field(
        default_factory=list, description="Models that spent tokens and have no known price."
    )
    calls: int = Field(0, description="Model call attempts in the ledger.")
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    parent_run_id: str | None = Field(
        None, description="The run one of whose tasks this nested run carries out."
    )
    parent_task_id: str | None = Field(None, description="That task of the parent run.")


class PlanVersion(BaseModel):
    """One version of a run's plan: the first one planned (or given), then each revision
    with its reason and the tasks it added, changed and dropped."""

    version: int
    plan: Plan
    reason: str | None = Field(None, description="Why the plan was revised; None: the first.")
    changes: PlanChanges = Field(default_factory=PlanChanges)
    usage: Usage = Field(default_factory=Usage, description="What writing this version cost.")
    created_at: float = Field(default_factory=time.time)


class RunSummary(BaseModel):
    """One line of ``foreman runs``."""

    run_id: str
    request: str
    status: RunStatus
    tasks: int
    tasks_done: int
    usage: Usage
    cost: float | None = Field(None, description="US dollars, None where a price is unknown.")
    unpriced: list[str] = Field(
        default_factory=list, description="Models that spent tokens and have no known price."
    )
    error: str | None = Field(None, description="Why the run stopped, as ``RunRecord.error``.")
    created_at: float
    updated_at: float
    parent_run_id: str | None = Field(None, description="Set for a nested run.")
    parent_task_id: str | None = None

    @property
    def budget_limit(self) -> str | None:
        """The limit an ``over_budget`` run reached (``max_cost_usd``...), as its error
        says; None for any other run."""
        return limit_in(self.error) if self.status is RunStatus.over_budget else None

    def as_json(self) -> dict[str, Any]:
        """The run as ``foreman runs --json`` and the dashboard's ``/api/runs`` show it.
        These field names are a contract: add, never rename."""
        return {
            "run_id": self.run_id,
            "status": self.status.value,
            "budget_limit": self.budget_limit,
            "request": self.request,
            "tasks_done": self.tasks_done,
            "tasks_total": self.tasks,
            "input_tokens": self.usage.input_tokens,
            "output_tokens": self.usage.output_tokens,
            "cache_read_tokens": self.usage.cache_read_tokens,
            "cache_write_tokens": self.usage.cache_write_tokens,
            "cost_usd": self.cost,
            "unpriced_models": self.unpriced,
            "error": self.error,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "parent_run_id": self.parent_run_id,
            "parent_task_id": self.parent_task_id,
        }


class ApprovalStatus(StrEnum):
    pending = "pending"
    approved = "approved"
    rejected = "rejected"


class Approval(BaseModel):
    """A request for a person's decision on one task, and the decision once made."""

    run_id: str
    task_id: str
    worker: str
    risk: RiskLevel
    instructions: str
    inputs: str = Field(description="The exact message the worker would receive.")
    status: ApprovalStatus = ApprovalStatus.pending
    note: str | None = Field(None, description="The approver's note or rejection reason.")
    requested_at: float = Field(default_factory=time.time)
    decided_at: float | None = None
    started_at: float | None = Field(
        None, description="When the approved execution started (set before the worker runs)."
    )
    may_have_run: bool = Field(
        False,
        description="Asked again: an approved execution already started (it failed or was cut "
        "short).",
    )
    tool: str | None = Field(
        None, description="Set when a tool call asks: ``task_id`` is then ``<task>#<n>``."
    )
    arguments: dict[str, Any] | None = Field(
        None, description="The tool call's exact arguments, which the decision covers."
    )


class LeaseOwner(BaseModel):
    """Who holds a run's lease: a process on a host, plus a random id for this execution."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    pid: int = Field(default_factory=os.getpid)
    host: str = Field(default_factory=socket.gethostname)

    def is_alive(self) -> bool:
        """True unless we can tell the process is gone (only on the same host)."""
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One settled task and the events recorded before it: a unit of ``save_checkpoints``."""

    result: TaskResult
    events: Sequence[Any] = ()
