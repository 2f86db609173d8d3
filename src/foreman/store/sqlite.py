"""The default store: one SQLite file in WAL mode, written from one dedicated thread.

Why a thread: sqlite3 calls block, and a commit can wait on the disk; running them on one
thread of their own keeps the event loop free and gives every write a total order. Each
checkpoint is one ``BEGIN IMMEDIATE ... COMMIT`` transaction, so a crash (even SIGKILL)
leaves either the whole checkpoint or none of it. ``synchronous=NORMAL`` makes commits
durable against process crashes; a power cut may lose the last few, never corrupt the file.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from foreman.engine.results import RunStatus, TaskResult
from foreman.errors import RunLockedError, StoreError, UnknownRunError
from foreman.models.base import Usage
from foreman.models.pricing import run_cost
from foreman.plan.schema import Plan
from foreman.store.base import (
    Approval,
    ApprovalStatus,
    LeaseOwner,
    RunRecord,
    RunSummary,
    Store,
    decide_approval,
    start_approval,
)
from foreman.store.migrations import migrate

T = TypeVar("T")


def default_db_path() -> Path:
    """``FOREMAN_DB``, else ``$XDG_DATA_HOME/foreman/foreman.db`` (``~/.local/share/...``)."""
    if explicit := os.environ.get("FOREMAN_DB"):
        return Path(explicit).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "foreman" / "foreman.db"


class SQLiteStore(Store):
    """Runs in one SQLite file; safe to share between processes (WAL, busy timeout)."""

    def __init__(self, path: str | Path | None = None, *, busy_timeout: float = 5.0) -> None:
        self.path = Path(path).expanduser() if path else default_db_path()
        self.busy_timeout = busy_timeout
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="foreman-store")
        self._connection: sqlite3.Connection | None = None

    # --- plumbing --------------------------------------------------------------------

    async def _run(self, action: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._call, action)

    def _call(self, action: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return action(self._connect())
        except sqlite3.DatabaseError as exc:
            raise _store_error(exc, self.path) from exc

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"Cannot create the folder for {self.path}: {exc}") from exc
            connection = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA foreign_keys=ON")
            migrate(connection, str(self.path))
            self._connection = connection
        return self._connection

    @staticmethod
    @contextmanager
    def _transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    async def aclose(self) -> None:
        def close(_: Any) -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        if self._connection is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, close, None)
        self._thread.shutdown(wait=False)

    # --- runs ------------------------------------------------------------------------

    async def create_run(self, run: RunRecord) -> None:
        def write(db: sqlite3.Connection) -> None:
            with self._transaction(db):
                db.execute(
                    "INSERT INTO runs (run_id, request, status, settings, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        run.run_id,
                        run.request,
                        run.status.value,
                        json.dumps(run.settings),
                        run.created_at,
                        run.updated_at,
                    ),
                )

        await self._run(write)

    async def get_run(self, run_id: str) -> RunRecord:
        def read(db: sqlite3.Connection) -> RunRecord:
            row = db.execute(
                "SELECT run_id, request, status, settings, answer, error, input_tokens,"
                " output_tokens, created_at, updated_at FROM runs WHERE run_id = ?",
                (run_id,),
            ).fetchone()
            if row is None:
                raise UnknownRunError(
                    f"No run {run_id!r} in {self.path}. `foreman runs` lists the runs."
                )
            plan = db.execute(
                "SELECT version, plan, input_tokens, output_tokens FROM plans WHERE run_id = ?"
                " ORDER BY version DESC LIMIT 1",
                (run_id,),
            ).fetchone()
            return RunRecord(
                run_id=row[0],
                request=row[1],
                status=RunStatus(row[2]),
                settings=json.loads(row[3]),
                answer=row[4],
                error=row[5],
                usage=Usage(input_tokens=row[6], output_tokens=row[7]),
                created_at=row[8],
                updated_at=row[9],
                plan=Plan.model_validate_json(plan[1]) if plan else None,
                plan_version=plan[0] if plan else 0,
                plan_usage=Usage(input_tokens=plan[2], output_tokens=plan[3]) if plan else Usage(),
            )

        return await self._run(read)

    async def list_runs(self, limit: int = 50) -> list[RunSummary]:
        def read(db: sqlite3.Connection) -> list[RunSummary]:
            runs = db.execute(
                "SELECT r.run_id, r.request, r.status, r.input_tokens, r.output_tokens,"
                " r.settings, r.created_at, r.updated_at,"
                " (SELECT json_array_length(plan, '$.tasks') FROM plans p"
                "  WHERE p.run_id = r.run_id ORDER BY version DESC LIMIT 1)"
                " FROM runs r ORDER BY r.created_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
            per_model: dict[str, list[tuple[Any, ...]]] = {row[0]: [] for row in runs}
            for run_id, *group in db.execute(  # every listed run's tasks, in one query
                "SELECT run_id, model, status, SUM(input_tokens), SUM(output_tokens), COUNT(*)"
                " FROM tasks WHERE run_id IN (SELECT run_id FROM runs"
                "  ORDER BY created_at DESC LIMIT ?) GROUP BY run_id, model, status",
                (limit,),
            ):
                per_model[run_id].append(tuple(group))
            return [_summary(row, per_model[row[0]]) for row in runs]

        return await self._run(read)

    async def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        answer: str | None = None,
        error: str | None = None,
        usage: Usage | None = None,
        events: Sequence[Any] = (),
    ) -> None:
        def write(db: sqlite3.Connection) -> None:
            with self._transaction(db):
                updated = db.execute(
                    "UPDATE runs SET status = ?, answer = ?, error = ?,"
                    " input_tokens = COALESCE(?, input_tokens),"
                    " output_tokens = COALESCE(?, output_tokens), updated_at = ?"
                    " WHERE run_id = ?",
                    (
                        status.value,
                        answer,
                        error,
                        usage.input_tokens if usage else None,
                        usage.output_tokens if usage else None,
                        time.time(),
                        run_id,
                    ),
                ).rowcount
                if not updated:
                    raise UnknownRunError(f"No run {run_id!r} in {self.path}.")
                _append_events(db, run_id, events)

        await self._run(write)

    # --- plans and tasks ---------------------------------------------------------------

    async def save_plan(self, run_id: str, plan: Plan, usage: Usage | None = None) -> int:
        usage = usage or Usage()

        def write(db: sqlite3.Connection) -> int:
            with self._transaction(db):
                _require_run(db, run_id, self.path)
                (version,) = db.execute(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM plans WHERE run_id = ?", (run_id,)
                ).fetchone()
                db.execute(
                    "INSERT INTO plans (run_id, version, plan, input_tokens, output_tokens,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        run_id,
                        version,
                        plan.model_dump_json(),
                        usage.input_tokens,
                        usage.output_tokens,
                        time.time(),
                    ),
                )
                return version

        return await self._run(write)

    async def save_task(self, run_id: str, result: TaskResult, events: Sequence[Any] = ()) -> None:
        row = (
            run_id,
            result.task_id,
            result.status.value,
            result.model,
            result.usage.input_tokens,
            result.usage.output_tokens,
            result.model_dump_json(),
            time.time(),
        )

        def write(db: sqlite3.Connection) -> None:
            with self._transaction(db):
                _require_run(db, run_id, self.path)
                db.execute(
                    "INSERT OR REPLACE INTO tasks (run_id, task_id, status, model, input_tokens,"
                    " output_tokens, result, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
                _append_events(db, run_id, events)

        await self._run(write)

    async def load_tasks(self, run_id: str) -> dict[str, TaskResult]:
        def read(db: sqlite3.Connection) -> dict[str, TaskResult]:
            rows = db.execute("SELECT result FROM tasks WHERE run_id = ?", (run_id,))
            results = (TaskResult.model_validate_json(row[0]) for row in rows)
            return {result.task_id: result for result in results}

        return await self._run(read)

    async def load_events(self, run_id: str) -> list[dict[str, Any]]:
        def read(db: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = db.execute("SELECT event FROM events WHERE run_id = ? ORDER BY seq", (run_id,))
            return [json.loads(row[0]) for row in rows]

        return await self._run(read)

    # --- leases ----------------------------------------------------------------------

    async def acquire_lease(self, run_id: str, owner: LeaseOwner, ttl: float) -> None:
        def write(db: sqlite3.Connection) -> None:
            with self._transaction(db):
                row = db.execute(
                    "SELECT lease_owner, lease_until FROM runs WHERE run_id = ?", (run_id,)
                ).fetchone()
                if row is None:
                    raise UnknownRunError(f"No run {run_id!r} in {self.path}.")
                holder = LeaseOwner.model_validate_json(row[0]) if row[0] else None
                if (
                    holder is not None
                    and holder.id != owner.id
                    and row[1] > time.time()
                    and holder.is_alive()
                ):
                    raise RunLockedError(
                        f"Run {run_id} is being executed by process {holder.pid} on "
                        f"{holder.host} (lease held for {row[1] - time.time():.0f}s more). "
                        "Wait for it to finish, or stop that process first."
                    )
                db.execute(
                    "UPDATE runs SET lease_owner = ?, lease_until = ? WHERE run_id = ?",
                    (owner.model_dump_json(), time.time() + ttl, run_id),
                )

        await self._run(write)

    async def renew_lease(self, run_id: str, owner: LeaseOwner, ttl: float) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE runs SET lease_until = ? WHERE run_id = ? AND lease_owner = ?",
                (time.time() + ttl, run_id, owner.model_dump_json()),
            )

        await self._run(write)

    async def release_lease(self, run_id: str, owner: LeaseOwner) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE runs SET lease_owner = NULL, lease_until = NULL"
                " WHERE run_id = ? AND lease_owner = ?",
                (run_id, owner.model_dump_json()),
            )

        await self._run(write)

    # --- approvals -------------------------------------------------------------------

    async def request_approval(self, approval: Approval) -> Approval:
        def write(db: sqlite3.Connection) -> Approval:
            with self._transaction(db):
                row = db.execute(
                    "SELECT approval FROM approvals WHERE run_id = ? AND task_id = ?",
                    (approval.run_id, approval.task_id),
                ).fetchone()
                if row is not None:
                    existing = Approval.model_validate_json(row[0])
                    if existing.inputs == approval.inputs:
                        return existing
                _require_run(db, approval.run_id, self.path)
                db.execute(
                    "INSERT OR REPLACE INTO approvals (run_id, task_id, status, approval,"
                    " requested_at) VALUES (?, ?, ?, ?, ?)",
                    (
                        approval.run_id,
                        approval.task_id,
                        approval.status.value,
                        approval.model_dump_json(),
                        approval.requested_at,
                    ),
                )
                return approval

        return await self._run(write)

    async def get_approval(self, run_id: str, task_id: str) -> Approval | None:
        def read(db: sqlite3.Connection) -> Approval | None:
            row = db.execute(
                "SELECT approval FROM approvals WHERE run_id = ? AND task_id = ?",
                (run_id, task_id),
            ).fetchone()
            return Approval.model_validate_json(row[0]) if row else None

        return await self._run(read)

    async def list_approvals(
        self, status: ApprovalStatus | None = ApprovalStatus.pending
    ) -> list[Approval]:
        def read(db: sqlite3.Connection) -> list[Approval]:
            if status is None:
                rows = db.execute("SELECT approval FROM approvals ORDER BY requested_at")
            else:
                rows = db.execute(
                    "SELECT approval FROM approvals WHERE status = ? ORDER BY requested_at",
                    (status.value,),
                )
            return [Approval.model_validate_json(row[0]) for row in rows]

        return await self._run(read)

    async def decide(
        self, run_id: str, task_id: str, *, approved: bool, note: str | None
    ) -> Approval:
        def write(db: sqlite3.Connection) -> Approval:
            with self._transaction(db):
                row = db.execute(
                    "SELECT approval FROM approvals WHERE run_id = ? AND task_id = ?",
                    (run_id, task_id),
                ).fetchone()
                current = Approval.model_validate_json(row[0]) if row else None
                decided = decide_approval(current, run_id, task_id, approved, note)
                if db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
                    raise UnknownRunError(f"No run {run_id!r} in {self.path}.")
                db.execute(
                    "UPDATE approvals SET status = ?, approval = ?"
                    " WHERE run_id = ? AND task_id = ?",
                    (decided.status.value, decided.model_dump_json(), run_id, task_id),
                )
                return decided

        return await self._run(write)

    async def start_approved(self, run_id: str, task_id: str) -> Approval:
        def write(db: sqlite3.Connection) -> Approval:
            with self._transaction(db):
                _require_run(db, run_id, self.path)
                row = db.execute(
                    "SELECT approval FROM approvals WHERE run_id = ? AND task_id = ?",
                    (run_id, task_id),
                ).fetchone()
                current = Approval.model_validate_json(row[0]) if row else None
                started = start_approval(current, run_id, task_id)
                db.execute(
                    "UPDATE approvals SET status = ?, approval = ?, requested_at = ?"
                    " WHERE run_id = ? AND task_id = ?",
                    (
                        started.status.value,
                        started.model_dump_json(),
                        started.requested_at,
                        run_id,
                        task_id,
                    ),
                )
                return started

        return await self._run(write)


def _require_run(db: sqlite3.Connection, run_id: str, path: Path) -> None:
    if db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
        raise UnknownRunError(f"No run {run_id!r} in {path}. `foreman runs` lists the runs.")


def _append_events(db: sqlite3.Connection, run_id: str, events: Sequence[Any]) -> None:
    if not events:
        return
    (start,) = db.execute(
        "SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?", (run_id,)
    ).fetchone()
    db.executemany(
        "INSERT INTO events (run_id, seq, type, event) VALUES (?, ?, ?, ?)",
        [
            (run_id, start + offset, event.type, event.model_dump_json())
            for offset, event in enumerate(events, 1)
        ],
    )


def _summary(row: tuple[Any, ...], per_model: list[tuple[Any, ...]]) -> RunSummary:
    """One ``runs`` row and its tasks grouped by (model, status) as a summary."""
    usage = Usage(input_tokens=row[3], output_tokens=row[4])
    return RunSummary(
        run_id=row[0],
        request=row[1],
        status=RunStatus(row[2]),
        tasks=row[8] or 0,
        tasks_done=sum(n for _, status, _, _, n in per_model if status == "succeeded"),
        usage=usage,
        cost=run_cost(
            json.loads(row[5]).get("model"),
            usage,
            [
                (model, Usage(input_tokens=i or 0, output_tokens=o or 0))
                for model, _, i, o, _ in per_model
            ],
        ),
        created_at=row[6],
        updated_at=row[7],
    )


def _store_error(exc: sqlite3.DatabaseError, path: Path) -> StoreError:
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
