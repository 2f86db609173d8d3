"""The run store: a small async interface, and the records it keeps.

Persistence is a delta log, never a snapshot: a run row, its plan versions, one row per
task written when that task settles, events, and approvals. Storage therefore grows
linearly with the number of tasks, and a crash loses at most the tasks still running.
Every implementation must pass ``tests/test_store_conformance.py``.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from foreman.engine.results import RunStatus, TaskResult
from foreman.errors import ApprovalError
from foreman.models.base import Usage
from foreman.plan.schema import Plan
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
    usage: Usage = Field(default_factory=Usage)
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)


class RunSummary(BaseModel):
    """One line of ``foreman runs``."""

    run_id: str
    request: str
    status: RunStatus
    tasks: int
    tasks_done: int
    usage: Usage
    cost: float | None = Field(None, description="US dollars, None where a price is unknown.")
    created_at: float
    updated_at: float


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
        False, description="Asked again: an approved execution started and never finished."
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


class Store(ABC):
    """Where runs, plans, task results, events and approvals live.

    Writes that belong together (a task's result and the events leading to it) are one
    atomic call, so a reader never sees half a checkpoint.
    """

    # runs
    @abstractmethod
    async def create_run(self, run: RunRecord) -> None: ...

    @abstractmethod
    async def get_run(self, run_id: str) -> RunRecord:
        """The run with its latest plan; ``UnknownRunError`` if there is none."""

    @abstractmethod
    async def list_runs(self, limit: int = 50) -> list[RunSummary]:
        """Newest first."""

    @abstractmethod
    async def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        answer: str | None = None,
        error: str | None = None,
        usage: Usage | None = None,
        events: Sequence[Any] = (),
    ) -> None: ...

    # plans and tasks
    @abstractmethod
    async def save_plan(self, run_id: str, plan: Plan, usage: Usage | None = None) -> int:
        """Store a new plan version and what planning it cost; returns its number (1, 2...)."""

    @abstractmethod
    async def save_task(self, run_id: str, result: TaskResult, events: Sequence[Any] = ()) -> None:
        """Checkpoint one settled task (and the events before it) atomically."""

    @abstractmethod
    async def load_tasks(self, run_id: str) -> dict[str, TaskResult]: ...

    @abstractmethod
    async def load_events(self, run_id: str) -> list[dict[str, Any]]:
        """Events as stored (JSON objects), in order."""

    # leases
    @abstractmethod
    async def acquire_lease(self, run_id: str, owner: LeaseOwner, ttl: float) -> None:
        """Take the run for ``owner``; ``RunLockedError`` if a live owner holds it."""

    @abstractmethod
    async def renew_lease(self, run_id: str, owner: LeaseOwner, ttl: float) -> None: ...

    @abstractmethod
    async def release_lease(self, run_id: str, owner: LeaseOwner) -> None: ...

    # approvals
    @abstractmethod
    async def request_approval(self, approval: Approval) -> Approval:
        """Record a pending request and return the one that stands.

        Idempotent for the same inputs: an existing request (pending or decided) is returned
        as it is. A decision covers only the inputs that were shown, so a request with other
        inputs (a dependency ran again and changed them) replaces it, pending again.
        """

    @abstractmethod
    async def get_approval(self, run_id: str, task_id: str) -> Approval | None: ...

    @abstractmethod
    async def list_approvals(
        self, status: ApprovalStatus | None = ApprovalStatus.pending
    ) -> list[Approval]: ...

    @abstractmethod
    async def decide(
        self, run_id: str, task_id: str, *, approved: bool, note: str | None
    ) -> Approval:
        """Approve or reject a pending request; ``ApprovalError`` if there is none pending."""

    async def aclose(self) -> None:  # noqa: B027 - stores without resources need nothing
        """Release files and threads; safe to call more than once."""

    # approved executions
    @abstractmethod
    async def start_approved(self, run_id: str, task_id: str) -> Approval:
        """Record, durably and before the worker is called, that an approved task starts.

        An approval covers one execution. Returned approved with ``started_at`` set; but if
        an approved execution had already started (the process died during it, or it
        failed), the approval is used up: it is returned pending again, with
        ``may_have_run``, and must be decided anew. ``ApprovalError`` if the task has no
        approved (or used-up) approval.
        """


def decide_approval(
    current: Approval | None, run_id: str, task_id: str, approved: bool, note: str | None
) -> Approval:
    """The decided approval, or why it cannot be decided (shared by every store)."""
    if current is None:
        raise ApprovalError(
            f"Task {task_id!r} of run {run_id!r} is not waiting for approval: only tasks of "
            "medium or high risk ask for one. `foreman approvals` lists the pending ones."
        )
    if current.status is not ApprovalStatus.pending:
        raise ApprovalError(
            f"Task {task_id!r} of run {run_id!r} was already {current.status.value}"
            + (f" ({current.note})" if current.note else "")
            + "."
        )
    return current.model_copy(
        update={
            "status": ApprovalStatus.approved if approved else ApprovalStatus.rejected,
            "note": note,
            "decided_at": time.time(),
        }
    )


def start_approval(current: Approval | None, run_id: str, task_id: str) -> Approval:
    """The approval once its execution starts, or pending again if one started before
    (shared by every store; see ``Store.start_approved``)."""
    if current is None or current.status is not ApprovalStatus.approved:
        raise ApprovalError(f"Task {task_id!r} of run {run_id!r} has no approval to start.")
    if current.started_at is None:
        return current.model_copy(update={"started_at": time.time()})
    return current.model_copy(
        update={
            "status": ApprovalStatus.pending,
            "may_have_run": True,
            "started_at": None,
            "note": None,
            "decided_at": None,
            "requested_at": time.time(),
        }
    )
