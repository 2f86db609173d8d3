"""SQLite rows of runs, approvals and events as ``SQLiteStore`` reads and checks them, and
its errors in words a user can act on."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from foreman.errors import StoreError, UnknownRunError
from foreman.models.base import Usage
from foreman.models.pricing import Cost, run_price
from foreman.plan.schema import Plan
from foreman.results import RunStatus, TaskResult
from foreman.store.base import (
    Approval,
    ApprovalStatus,
    LeaseOwner,
    RunRecord,
    RunSummary,
    described,
    observed_status,
    reading_run,
    withdrawn,
)
from foreman.store.sqlite_ledger import (
    CALL_COLUMNS,
    USAGE_COLUMNS,
    call_from_row,
    insert_rows,
    legacy_price,
    usage_from_columns,
)
from foreman.store.sqlite_tree import tree_books


def require_run(db: sqlite3.Connection, run_id: str, path: Path) -> None:
    if db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
        raise UnknownRunError(f"No run {run_id!r} in {path}. `foreman runs` lists the runs.")


def withdraw_pending(db: sqlite3.Connection, run_id: str, where: str) -> None:
    """Reject the pending approval requests of a run that was just cancelled."""
    rows = db.execute(
        "SELECT approval FROM approvals WHERE run_id = ? AND status = ?",
        (run_id, ApprovalStatus.pending.value),
    ).fetchall()
    for (text,) in rows:
        with reading_run(run_id, where):
            decided = withdrawn(Approval.model_validate_json(text))
        db.execute(
            "UPDATE approvals SET status = ?, approval = ? WHERE run_id = ? AND task_id = ?",
            (decided.status.value, decided.model_dump_json(), run_id, decided.task_id),
        )


def append_events(db: sqlite3.Connection, run_id: str, events: Sequence[Any]) -> None:
    if not events:
        return
    (start,) = db.execute(
        "SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?", (run_id,)
    ).fetchone()
    insert_rows(
        db,
        "INSERT INTO events (run_id, seq, type, event)",
        [
            (run_id, start + offset, event.type, event.model_dump_json())
            for offset, event in enumerate(events, 1)
        ],
    )


def read_run(
    db: sqlite3.Connection, run_id: str, path: Path, *, with_plan: bool = True
) -> RunRecord:
    """One run and its latest plan, as ``get_run`` returns it and ``check`` tries it
    (without the plan, which ``check`` reads as a row of its own)."""
    row = db.execute(
        f"SELECT run_id, request, status, settings, answer, error, created_at,"
        f" updated_at, lease_owner, lease_until, {USAGE_COLUMNS}, parent_run_id,"
        " parent_task_id FROM runs WHERE run_id = ?",
        (run_id,),
    ).fetchone()
    if row is None:
        raise UnknownRunError(f"No run {run_id!r} in {path}. `foreman runs` lists the runs.")
    plan = (
        with_plan
        and db.execute(
            f"SELECT version, plan, {USAGE_COLUMNS} FROM plans WHERE run_id = ?"
            " ORDER BY version DESC LIMIT 1",
            (run_id,),
        ).fetchone()
    )
    booked = tree_books(db, [run_id]).get(run_id)
    with reading_run(run_id, str(path)):
        settings = settings_from_json(row[3])
        if booked is None:  # stored before the ledger: its own total, priced the old way
            usage, price = (
                usage_from_columns(row[10:14]),
                legacy_price(db, run_id, settings, row[10:14]),
            )
            booked = (0, usage, price.cost_usd, price.unpriced)
        return RunRecord(
            run_id=row[0],
            request=row[1],
            status=stored_status(row[2], row[8], row[9]),
            settings=settings,
            answer=row[4],
            error=row[5],
            calls=booked[0],
            usage=booked[1],
            cost_usd=booked[2],
            unpriced=booked[3],
            created_at=row[6],
            updated_at=row[7],
            plan=Plan.model_validate_json(plan[1]) if plan else None,
            plan_version=plan[0] if plan else 0,
            plan_usage=usage_from_columns(plan[2:]) if plan else Usage(),
            parent_run_id=row[14],
            parent_task_id=row[15],
        )


def stored_approval(
    db: sqlite3.Connection, run_id: str, task_id: str, path: Path
) -> Approval | None:
    """The approval request of one task, if any; a damaged row is a corrupted run."""
    row = db.execute(
        "SELECT approval FROM approvals WHERE run_id = ? AND task_id = ?", (run_id, task_id)
    ).fetchone()
    with reading_run(run_id, str(path)):
        return Approval.model_validate_json(row[0]) if row else None


def json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, found {type(value).__name__}")
    return value


def settings_from_json(text: str) -> dict[str, Any]:
    return json_object(text)


def stored_status(status: str, lease_owner: str | None, lease_until: float | None) -> RunStatus:
    holder = LeaseOwner.model_validate_json(lease_owner) if lease_owner else None
    return observed_status(RunStatus(status), holder, lease_until)


def observed_status_of(db: sqlite3.Connection, run_id: str, path: Path) -> RunStatus:
    """The run's status as it stands now (``crashed`` derived); ``UnknownRunError``."""
    row = db.execute(
        "SELECT status, lease_owner, lease_until FROM runs WHERE run_id = ?", (run_id,)
    ).fetchone()
    if row is None:
        raise UnknownRunError(f"No run {run_id!r} in {path}. `foreman runs` lists the runs.")
    with reading_run(run_id, str(path)):
        return stored_status(*row)


def summary_from_row(
    row: tuple[Any, ...],
    per_model: list[tuple[Any, ...]],
    booked: tuple[int, Usage, float | None, list[str]] | None,
    path: Path,
) -> RunSummary:
    """One ``runs`` row, its tasks grouped by (model, status) and its books as a summary;
    a run stored before the ledger is priced from its tasks, the old way."""
    with reading_run(row[0], str(path)):
        if booked is not None:
            usage, price = booked[1], Cost(booked[2], booked[3])
        else:
            usage = usage_from_columns(row[9:13])
            tasks = [(group[0], usage_from_columns(group[3:])) for group in per_model]
            price = run_price(settings_from_json(row[3]).get("model"), usage, tasks)
        return RunSummary(
            run_id=row[0],
            request=row[1],
            status=stored_status(row[2], row[6], row[7]),
            tasks=row[8] or 0,
            # with no plan to count (or one that cannot be read), every task stored
            tasks_done=row[16]
            if row[8] is not None
            else sum(group[2] for group in per_model if group[1] == "succeeded"),
            usage=usage,
            cost=price.cost_usd,
            unpriced=price.unpriced,
            error=row[13],
            created_at=row[4],
            updated_at=row[5],
            parent_run_id=row[14],
            parent_task_id=row[15],
        )


def row_problems(db: sqlite3.Connection, where: str) -> list[str]:
    """One line per stored row that cannot be read back."""
    checks: list[tuple[str, Callable[[tuple[Any, ...]], object]]] = [
        (
            "SELECT run_id, 'run', lease_owner FROM runs",
            lambda r: (
                read_run(db, r[0], Path(where), with_plan=False),  # as `show` reads it
                r[2] and LeaseOwner.model_validate_json(r[2]),
            ),
        ),
        (
            "SELECT run_id, 'plan ' || version, plan FROM plans",
            lambda r: Plan.model_validate_json(r[2]),
        ),
        (
            "SELECT run_id, 'task ' || task_id, result FROM tasks",
            lambda r: TaskResult.model_validate_json(r[2]),
        ),
        ("SELECT run_id, 'event ' || seq, event FROM events", lambda r: json_object(r[2])),
        (
            "SELECT run_id, 'approval of ' || task_id, approval FROM approvals",
            lambda r: Approval.model_validate_json(r[2]),
        ),
        (
            f"SELECT run_id, 'call ' || call_id, {CALL_COLUMNS} FROM calls",
            lambda r: call_from_row(r[2:]),
        ),
    ]
    problems = []
    for query, parse in checks:
        for row in db.execute(query):
            try:
                with reading_run(row[0], where):
                    parse(row)
            except StoreError as exc:
                problems.append(f"run {row[0]}: {row[1]} cannot be read ({cause_of(exc)})")
    return problems


def cause_of(exc: BaseException) -> str:
    return described(exc.__cause__ or exc)


def store_error(exc: sqlite3.DatabaseError, path: Path) -> StoreError:
    message = str(exc)
    if "not a database" in message or "malformed" in message:
        return StoreError(
            f"The run store {path} is corrupted or not a foreman database ({message}). "
            "Move it aside (or set FOREMAN_DB / --db to another file) and run again."
        )
    if "locked" in message or "busy" in message:
        return StoreError(
            f"The run store {path} is locked by another process ({message}). Try again "
            "when it is done, or use another file with FOREMAN_DB / --db."
        )
    if "full" in message:
        return StoreError(
            f"The run store {path} could not be written: the disk is full ({message}). "
            "Earlier checkpoints are intact: free some space, then `foreman resume` the run."
        )
    return StoreError(f"The run store {path} failed: {message}")
