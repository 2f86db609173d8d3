"""The run store: a small async interface, and the records it keeps.

Persistence is a delta log, never a snapshot: a run row, its plan versions, one row per
task written when that task settles, events, and approvals. Storage therefore grows
linearly with the number of tasks, and a crash loses at most the tasks still running.
Every implementation must pass the conformance suite,
``foreman.testing.store_conformance.StoreConformance`` (docs/stores.md: write your own store).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, Field, ValidationError

from foreman.engine.results import RunStatus, TaskResult
from foreman.errors import (
    AmbiguousRunError,
    ApprovalError,
    CorruptedRunError,
    RunFinishedError,
    RunLockedError,
    UnknownRunError,
)
from foreman.ledger.records import CRASHED, CallRecord, CallStatus, price_of
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
    usage: Usage = Field(default_factory=Usage, description="The sum of the run's ledger.")
    cost_usd: float | None = Field(
        None, description="US dollars, each call at its own model's price; None if unknown."
    )
    unpriced: list[str] = Field(
        default_factory=list, description="Models that spent tokens and have no known price."
    )
    calls: int = Field(0, description="Model call attempts in the ledger.")
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
    unpriced: list[str] = Field(
        default_factory=list, description="Models that spent tokens and have no known price."
    )
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
        False,
        description="Asked again: an approved execution already started (it failed or was cut "
        "short).",
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


class Store(ABC):
    """Where runs, plans, task results, events and approvals live.

    Writes that belong together (a task's result and the events leading to it) are one
    atomic call, so a reader never sees half a checkpoint.
    """

    #: Whether what the store keeps outlives the process. A call in flight is written
    #: as it starts only to a durable store: the row exists so that a crash cannot hide
    #: the call's tokens, and a crash takes a store in memory with it anyway.
    durable: ClassVar[bool] = True

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
        calls: Sequence[CallRecord] = (),
    ) -> None:
        """Set the run's status (and answer, error), with the events and ledger records
        that lead to it, in one write. A run's tokens and cost are the sum of its ledger;
        ``usage`` only counts for a run that has no ledger (stored before there was one)."""

    async def update_settings(self, run_id: str, settings: dict[str, Any]) -> None:
        """Replace the run's recorded settings (what ``resume`` rebuilds it from): a budget
        raised on ``resume`` stays the run's budget. Raises ``UnknownRunError``.

        A store written before this method existed keeps this default, which says it
        cannot: ``resume`` then applies a raised budget to its own execution only."""
        raise NotImplementedError(f"{type(self).__name__} cannot update a run's settings.")

    @abstractmethod
    async def resolve_run(self, ref: str) -> str:
        """The id of the run ``ref`` names: a full id, a unique prefix, or ``last`` (newest).

        ``AmbiguousRunError`` (listing the candidates) when a prefix fits several runs,
        ``UnknownRunError`` when it fits none.
        """

    @abstractmethod
    async def cancel_run(self, run_id: str) -> RunStatus:
        """Cancel a run that has not finished; ``cancelled`` is final (resume refuses it).

        A run executing in a live process cannot be stopped from here: it is flagged, its
        process notices (``cancel_requested``), stops and records ``cancelled`` itself;
        ``running`` is returned. Any other unfinished run (paused, interrupted, crashed...)
        is marked ``cancelled`` at once and that is returned. ``RunFinishedError`` if the run
        already finished or was cancelled.
        """

    @abstractmethod
    async def cancel_requested(self, run_id: str) -> bool:
        """Whether someone asked this run to stop (polled by the process executing it)."""

    @abstractmethod
    async def delete_run(self, run_id: str, *, force: bool = False) -> None:
        """Delete a run and everything stored about it (plans, tasks, events, approvals).

        ``RunLockedError`` if a live process is executing it, unless ``force``.
        """

    # plans and tasks
    @abstractmethod
    async def save_plan(
        self,
        run_id: str,
        plan: Plan,
        usage: Usage | None = None,
        calls: Sequence[CallRecord] = (),
    ) -> int:
        """Store a new plan version, what planning it cost and the ledger records so far;
        returns its number (1, 2...)."""

    @abstractmethod
    async def save_task(
        self,
        run_id: str,
        result: TaskResult,
        events: Sequence[Any] = (),
        calls: Sequence[CallRecord] = (),
    ) -> None:
        """Checkpoint one settled task (and the events and ledger records before it)
        atomically."""

    async def save_checkpoints(
        self,
        run_id: str,
        checkpoints: Sequence[Checkpoint],
        calls: Sequence[CallRecord] = (),
    ) -> None:
        """Checkpoint tasks that settled together, with the ledger records so far.

        The engine groups what settles while a write is in flight into one call, so a wide
        fan-out costs a few writes, not one per task. Checkpoints are in the order they
        settled; each one's events come before the next one's. The built-in stores write
        the whole group in one transaction. This default, for a store that only has
        ``save_task``, writes the checkpoints one by one (the ledger records with the
        first): a failure can then leave the earlier ones stored, and the engine fails the
        whole group anyway, which only costs those tasks a rerun on resume.
        """
        if not checkpoints:
            if calls:
                await self.save_calls(run_id, calls)
            return
        for index, checkpoint in enumerate(checkpoints):
            await self.save_task(
                run_id, checkpoint.result, checkpoint.events, calls=() if index else calls
            )

    # the call ledger
    @abstractmethod
    async def save_calls(self, run_id: str, calls: Sequence[CallRecord]) -> None:
        """Write ledger records, replacing earlier versions of the same ``call_id``; a
        settled record is never replaced by a ``started`` one (writes may arrive late)."""

    @abstractmethod
    async def list_calls(
        self,
        *,
        run_id: str | None = None,
        task_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        with_prompts: bool = False,
    ) -> list[CallRecord]:
        """Ledger records, oldest first: of one run (and task) or of every run, started in
        ``[since, until)``. ``with_prompts=False`` leaves prompt and output out (stats).
        A ``started`` record of a run no live process is executing reads ``interrupted``:
        its process died during the call."""

    async def recent_calls(self, per_group: int) -> list[CallRecord]:
        """The newest ``per_group`` ledger records of each (purpose, worker, model), of
        every run, oldest first, without prompts: what ``foreman plan`` estimates from.

        Bounded so that a store with a long history answers as fast as a young one. This
        default reads the whole ledger (correct, and what a store written before this
        method existed gets); a store overrides it with an indexed query."""
        groups: dict[tuple[str, str | None, str], list[CallRecord]] = {}
        for record in await self.list_calls():
            groups.setdefault((record.purpose.value, record.worker, record.model), []).append(
                record
            )
        newest = [record for calls in groups.values() for record in calls[-per_group:]]
        return sorted(newest, key=lambda record: record.started_at)

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


def observed_status(
    status: RunStatus, holder: LeaseOwner | None, lease_until: float | None
) -> RunStatus:
    """A stored status as it stands now: ``running`` whose owner is gone reads ``crashed``.

    The owner is gone when its lease expired or was released without the status being
    settled, or (on this host) when its process no longer exists. A run never leased yet
    (just created) still reads ``running``.
    """
    if status is not RunStatus.running or holder is None:
        return status
    if (lease_until or 0.0) <= time.time() or not holder.is_alive():
        return RunStatus.crashed
    return status


def settled_as_read(record: CallRecord, run_status: RunStatus) -> CallRecord:
    """A ``started`` record reads ``interrupted`` unless its run is being executed now,
    priced at its estimate (a started record has no price yet), so a run's cost is the
    sum of its rows' even after a crash."""
    if record.status is CallStatus.started and run_status is not RunStatus.running:
        return record.model_copy(
            update={
                "status": CallStatus.interrupted,
                "error": CRASHED,
                "cost_usd": price_of(record),
            }
        )
    return record


def choose_run(ref: str, candidates: Sequence[str], where: str) -> str:
    """The one run a prefix names among ``candidates`` (newest first), or why not."""
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise UnknownRunError(f"No run {ref!r} in {where}. `foreman runs` lists the runs.")
    shown = ", ".join(candidates[:5]) + (
        f" and {len(candidates) - 5} more" if len(candidates) > 5 else ""
    )
    raise AmbiguousRunError(
        f"{ref!r} matches {len(candidates)} runs ({shown}): give more of the run id."
    )


def check_cancellable(run_id: str, status: RunStatus) -> None:
    if status.final:
        raise RunFinishedError(
            f"Run {run_id} is already {status.value}: there is nothing to cancel. "
            f"`foreman rm {run_id}` deletes it."
        )


def check_deletable(run_id: str, status: RunStatus, force: bool) -> None:
    """``status`` as observed: only a run a live process is executing is protected."""
    if status is RunStatus.running and not force:
        raise RunLockedError(
            f"Run {run_id} is running right now: `foreman cancel {run_id}` stops it, or "
            "`foreman rm --force` deletes it anyway."
        )


@contextmanager
def reading_run(run_id: str, where: str) -> Iterator[None]:
    """Turn a stored row that does not parse into one ``CorruptedRunError`` naming the run."""
    try:
        yield
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        # pydantic's ValidationError and json's JSONDecodeError are ValueErrors.
        detail = described(exc)
        raise CorruptedRunError(
            f"Run {run_id} in {where} is corrupted and cannot be read ({detail}). "
            f"`foreman doctor` checks the whole store; `foreman rm {run_id}` deletes the run.",
            run_id=run_id,
        ) from exc


def described(exc: BaseException) -> str:
    """What is wrong with a stored value, on one short line (no links, no input dumps)."""
    if isinstance(exc, ValidationError):
        problems = [
            f"{'.'.join(map(str, error['loc'])) or 'value'}: {error['msg']}"
            for error in exc.errors()[:3]
        ]
        return "; ".join(problems)
    return " ".join(str(exc).split())[:200]


def withdrawn(approval: Approval) -> Approval:
    """A pending request of a cancelled run, rejected: nobody needs to decide it any more."""
    return decide_approval(
        approval, approval.run_id, approval.task_id, False, "the run was cancelled"
    )


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
