"""Rules every store applies the same way: a status as observed now, which run a prefix
names, what may be cancelled or deleted, reading a damaged row, deciding approvals.
Kept here so that each store implements storage, never policy."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from pydantic import ValidationError

from foreman.errors import (
    AmbiguousRunError,
    ApprovalError,
    CorruptedRunError,
    RunFinishedError,
    RunLockedError,
    UnknownRunError,
)
from foreman.ledger.records import CRASHED, CallRecord, CallStatus, price_of
from foreman.results import RunStatus
from foreman.store.records import Approval, ApprovalStatus, LeaseOwner


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
    at the price its run gave its estimate (or, for a model that had none then, at the
    price known now), so a run's cost is the sum of its rows' even after a crash."""
    if record.status is CallStatus.started and run_status is not RunStatus.running:
        price = record.cost_usd if record.cost_usd is not None else price_of(record)
        return record.model_copy(
            update={"status": CallStatus.interrupted, "error": CRASHED, "cost_usd": price}
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


def covers_same(existing: Approval | None, requested: Approval) -> bool:
    """Whether a stored request stands for ``requested``: the same inputs shown for the
    same tool (a task's own approval has none). A tool call's inputs are its arguments
    alone, so two tools given the same arguments under one key are two requests."""
    return (
        existing is not None
        and existing.inputs == requested.inputs
        and existing.tool == requested.tool
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
