"""The default store: one SQLite file in WAL mode, written from one dedicated thread.

Why a thread: sqlite3 calls block, and a commit can wait on the disk; running them on one
thread of their own (``writer.WriterThread``) keeps the event loop free and gives every
write a total order. Each group of checkpoints (``save_checkpoints``: the tasks that settled
together, their events and ledger rows) is one ``BEGIN IMMEDIATE ... COMMIT`` transaction,
so a crash (even SIGKILL) leaves either the whole group or none of it.
``synchronous=NORMAL`` makes commits durable against process crashes; a power cut may lose
the last few, never corrupt the file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from foreman.engine.results import RunStatus, TaskResult
from foreman.errors import (
    CorruptedRunError,
    RunLockedError,
    StoreError,
    StoreNotFoundError,
    UnknownRunError,
)
from foreman.ledger.records import CallRecord
from foreman.models.base import Usage
from foreman.models.pricing import Cost, cost, run_price
from foreman.plan.schema import Plan
from foreman.store.base import (
    Approval,
    ApprovalStatus,
    Checkpoint,
    LeaseOwner,
    RunRecord,
    RunSummary,
    Store,
    check_cancellable,
    check_deletable,
    choose_run,
    decide_approval,
    described,
    observed_status,
    reading_run,
    settled_as_read,
    start_approval,
    withdrawn,
)
from foreman.store.migrations import migrate
from foreman.store.writer import WriterThread

T = TypeVar("T")


def default_db_path() -> Path:
    """``FOREMAN_DB``, else ``$XDG_DATA_HOME/foreman/foreman.db`` (``~/.local/share/...``)."""
    if explicit := os.environ.get("FOREMAN_DB"):
        return Path(explicit).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "foreman" / "foreman.db"


class SQLiteStore(Store):
    """Runs in one SQLite file; safe to share between processes (WAL, busy timeout).

    ``create=False`` is for commands that only look: a missing file is then never created
    (a typo in --db used to leave an empty database behind). Lists of runs and approvals
    are empty; anything about one run raises ``StoreNotFoundError``.
    """

    def __init__(
        self, path: str | Path | None = None, *, busy_timeout: float = 5.0, create: bool = True
    ) -> None:
        self.path = Path(path).expanduser() if path else default_db_path()
        self.busy_timeout = busy_timeout
        self.create = create
        self._writer = WriterThread("foreman-store")
        self._connection: sqlite3.Connection | None = None

    # --- plumbing --------------------------------------------------------------------

    async def _run(self, action: Callable[[sqlite3.Connection], T]) -> T:
        return await self._writer.run(lambda: self._call(action))

    def _call(self, action: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return action(self._connect())
        except sqlite3.DatabaseError as exc:
            raise _store_error(exc, self.path) from exc

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = self._open()
            try:
                self._use_wal(connection)
                connection.execute("PRAGMA synchronous=NORMAL")
                connection.execute("PRAGMA foreign_keys=ON")
                migrate(connection, str(self.path))
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _absent(self) -> bool:
        """No file, and none to create: a list of its runs is empty (not an error)."""
        return not self.create and self._connection is None and not self.path.exists()

    def _use_wal(self, connection: sqlite3.Connection) -> None:
        """Switch to WAL, waiting up to the busy timeout like any other statement.

        Switching the journal mode does not go through SQLite's busy handler: while another
        process is switching the same new file, it fails at once with "database is locked".
        So it is retried here, briefly, until the busy timeout runs out.
        """
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.005)

    def _open(self) -> sqlite3.Connection:
        if not self.create:
            if not self.path.is_file():
                raise StoreNotFoundError(
                    f"No run store at {self.path}: no runs yet, or a mistyped --db / FOREMAN_DB. "
                    "`foreman run` creates it."
                )
            # mode=rw: never create the file, even if it vanished since the check.
            uri = self.path.resolve().as_uri() + "?mode=rw"
            return sqlite3.connect(uri, uri=True, timeout=self.busy_timeout, isolation_level=None)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"Cannot create the folder for {self.path}: {exc}") from exc
        return sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)

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
        def close() -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        if self._connection is not None:
            await self._writer.run(close)
        self._writer.stop()

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
        return await self._run(lambda db: _read_run(db, run_id, self.path))

    async def list_runs(self, limit: int = 50) -> list[RunSummary]:
        if self._absent():
            return []

        def read(db: sqlite3.Connection) -> list[RunSummary]:
            runs = db.execute(
                "SELECT r.run_id, r.request, r.status, r.settings, r.created_at, r.updated_at,"
                " r.lease_owner, r.lease_until,"
                " (SELECT CASE WHEN json_valid(plan) THEN json_array_length(plan, '$.tasks') END"
                "  FROM plans p"
                "  WHERE p.run_id = r.run_id ORDER BY version DESC LIMIT 1),"
                " r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens"
                " FROM runs r ORDER BY r.created_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
            per_model: dict[str, list[tuple[Any, ...]]] = {row[0]: [] for row in runs}
            for run_id, *group in db.execute(  # every listed run's tasks, in one query
                "SELECT run_id, model, status, COUNT(*), SUM(input_tokens), SUM(output_tokens),"
                " SUM(cache_read_tokens), SUM(cache_write_tokens)"
                " FROM tasks WHERE run_id IN (SELECT run_id FROM runs"
                "  ORDER BY created_at DESC LIMIT ?) GROUP BY run_id, model, status",
                (limit,),
            ):
                per_model[run_id].append(tuple(group))
            booked = _ledger_books(db, [row[0] for row in runs])
            return [_summary(row, per_model[row[0]], booked.get(row[0]), self.path) for row in runs]

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
        calls: Sequence[CallRecord] = (),
    ) -> None:
        call_rows = _call_rows(calls)

        def write(db: sqlite3.Connection) -> None:
            with self._transaction(db):
                updated = db.execute(
                    "UPDATE runs SET status = ?, answer = ?, error = ?,"
                    " input_tokens = COALESCE(?, input_tokens),"
                    " output_tokens = COALESCE(?, output_tokens),"
                    " cache_read_tokens = COALESCE(?, cache_read_tokens),"
                    " cache_write_tokens = COALESCE(?, cache_write_tokens), updated_at = ?"
                    " WHERE run_id = ?",
                    (
                        status.value,
                        answer,
                        error,
                        *(_tokens(usage) if usage else (None,) * 4),
                        time.time(),
                        run_id,
                    ),
                ).rowcount
                if not updated:
                    raise UnknownRunError(f"No run {run_id!r} in {self.path}.")
                _append_events(db, run_id, events)
                _put_calls(db, call_rows)
                if status is RunStatus.cancelled:
                    _withdraw_pending(db, run_id, str(self.path))

        await self._run(write)

    async def resolve_run(self, ref: str) -> str:
        def read(db: sqlite3.Connection) -> str:
            if db.execute("SELECT 1 FROM runs WHERE run_id = ?", (ref,)).fetchone():
                return ref
            newest = "ORDER BY created_at DESC, run_id DESC"
            if ref == "last":
                row = db.execute(f"SELECT run_id FROM runs {newest} LIMIT 1").fetchone()
                if row is not None:
                    return row[0]
            rows = db.execute(
                f"SELECT run_id FROM runs WHERE ? != '' AND substr(run_id, 1, length(?)) = ?"
                f" {newest}",
                (ref, ref, ref),
            )
            return choose_run(ref, [row[0] for row in rows], str(self.path))

        return await self._run(read)

    async def cancel_run(self, run_id: str) -> RunStatus:
        def write(db: sqlite3.Connection) -> RunStatus:
            with self._transaction(db):
                status = _observed(db, run_id, self.path)
                check_cancellable(run_id, status)
                if status is RunStatus.running:
                    db.execute("UPDATE runs SET cancel_requested = 1 WHERE run_id = ?", (run_id,))
                    return status
                db.execute(
                    "UPDATE runs SET status = ?, cancel_requested = 1, updated_at = ?"
                    " WHERE run_id = ?",
                    (RunStatus.cancelled.value, time.time(), run_id),
                )
                _withdraw_pending(db, run_id, str(self.path))
                return RunStatus.cancelled

        return await self._run(write)

    async def update_settings(self, run_id: str, settings: dict[str, Any]) -> None:
        text = json.dumps(settings)

        def write(db: sqlite3.Connection) -> None:
            with self._transaction(db):
                found = db.execute(
                    "UPDATE runs SET settings = ? WHERE run_id = ?", (text, run_id)
                ).rowcount
            if not found:
                raise UnknownRunError(f"No run {run_id!r} in {self.path}.")

        await self._run(write)

    async def cancel_requested(self, run_id: str) -> bool:
        def read(db: sqlite3.Connection) -> bool:
            row = db.execute(
                "SELECT cancel_requested FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            return bool(row and row[0])

        return await self._run(read)

    async def delete_run(self, run_id: str, *, force: bool = False) -> None:
        def write(db: sqlite3.Connection) -> None:
            with self._transaction(db):
                try:
                    status = _observed(db, run_id, self.path)
                except CorruptedRunError:  # unreadable: deleting it is the way out
                    status = RunStatus.crashed
                check_deletable(run_id, status, force)
                for table in ("calls", "events", "approvals", "tasks", "plans", "runs"):
                    db.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))

        await self._run(write)

    async def check(self) -> list[str]:
        """Problems found in the file (``PRAGMA quick_check``) and in every stored row.

        An empty list means healthy. Used by ``foreman doctor``.
        """

        def read(db: sqlite3.Connection) -> list[str]:
            problems = [
                f"{self.path}: {row[0]}"
                for row in db.execute("PRAGMA quick_check")
                if row[0] != "ok"
            ]
            return problems + _row_problems(db, str(self.path))

        return await self._run(read)

    # --- plans and tasks ---------------------------------------------------------------

    async def save_plan(
        self,
        run_id: str,
        plan: Plan,
        usage: Usage | None = None,
        calls: Sequence[CallRecord] = (),
    ) -> int:
        usage = usage or Usage()
        call_rows = _call_rows(calls)

        def write(db: sqlite3.Connection) -> int:
            with self._transaction(db):
                _require_run(db, run_id, self.path)
                _put_calls(db, call_rows)
                (version,) = db.execute(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM plans WHERE run_id = ?", (run_id,)
                ).fetchone()
                db.execute(
                    f"INSERT INTO plans (run_id, version, plan, created_at, {_USAGE})"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, version, plan.model_dump_json(), time.time(), *_tokens(usage)),
                )
                return version

        return await self._run(write)

    async def save_task(
        self,
        run_id: str,
        result: TaskResult,
        events: Sequence[Any] = (),
        calls: Sequence[CallRecord] = (),
    ) -> None:
        await self.save_checkpoints(run_id, [Checkpoint(result, events)], calls)

    async def save_checkpoints(
        self,
        run_id: str,
        checkpoints: Sequence[Checkpoint],
        calls: Sequence[CallRecord] = (),
    ) -> None:
        """Every checkpoint and ledger record given, in one transaction."""
        call_rows = _call_rows(calls)
        now = time.time()
        task_rows = [
            (
                run_id,
                c.result.task_id,
                c.result.status.value,
                c.result.model,
                c.result.model_dump_json(),
                now,
                *_tokens(c.result.usage),
            )
            for c in checkpoints
        ]
        events = [event for c in checkpoints for event in c.events]

        def write(db: sqlite3.Connection) -> None:
            with self._transaction(db):
                _require_run(db, run_id, self.path)
                _insert(
                    db,
                    "INSERT OR REPLACE INTO tasks (run_id, task_id, status, model, result,"
                    f" updated_at, {_USAGE})",
                    task_rows,
                )
                _append_events(db, run_id, events)
                _put_calls(db, call_rows)

        await self._run(write)

    async def save_calls(self, run_id: str, calls: Sequence[CallRecord]) -> None:
        call_rows = _call_rows(calls)

        def write(db: sqlite3.Connection) -> None:
            with self._transaction(db):
                _require_run(db, run_id, self.path)
                _put_calls(db, call_rows)

        await self._run(write)

    async def list_calls(
        self,
        *,
        run_id: str | None = None,
        task_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        with_prompts: bool = False,
    ) -> list[CallRecord]:
        if self._absent():
            return []
        texts = "c.prompt, c.output" if with_prompts else "NULL, NULL"
        where, args = ["1"], []
        for clause, value in (
            ("c.run_id = ?", run_id),
            ("c.task_id = ?", task_id),
            ("c.started_at >= ?", since),
            ("c.started_at < ?", until),
        ):
            if value is not None:
                where.append(clause)
                args.append(value)

        def read(db: sqlite3.Connection) -> list[CallRecord]:
            rows = db.execute(
                f"SELECT {_CALL_COLUMNS_READ}, {texts}, r.status, r.lease_owner, r.lease_until"
                " FROM calls c JOIN runs r ON r.run_id = c.run_id"
                f" WHERE {' AND '.join(where)} ORDER BY c.started_at, c.rowid",
                args,
            ).fetchall()
            return self._read_calls(rows)

        return await self._run(read)

    async def recent_calls(self, per_group: int) -> list[CallRecord]:
        """One indexed ``LIMIT`` query per (purpose, worker, model) (``calls_by_group``):
        the cost grows with the groups and ``per_group``, not with the ledger's length."""
        if self._absent():
            return []

        def read(db: sqlite3.Connection) -> list[CallRecord]:
            rows = []
            for group in db.execute("SELECT DISTINCT purpose, worker, model FROM calls"):
                rows += db.execute(
                    f"SELECT {_CALL_COLUMNS_READ}, NULL, NULL, r.status, r.lease_owner,"
                    " r.lease_until FROM calls c JOIN runs r ON r.run_id = c.run_id"
                    " WHERE c.purpose = ? AND c.worker IS ? AND c.model = ?"
                    " ORDER BY c.started_at DESC, c.rowid DESC LIMIT ?",
                    (*group, per_group),
                ).fetchall()
            found = self._read_calls(rows)
            return sorted(found, key=lambda record: record.started_at)

        return await self._run(read)

    def _read_calls(self, rows: list[Any]) -> list[CallRecord]:
        """Ledger rows (each followed by its run's status and lease) as records, a
        ``started`` one of a run nobody executes read as ``interrupted``."""
        statuses: dict[str, RunStatus] = {}
        found = []
        for row in rows:
            with reading_run(row[0], str(self.path)):
                if row[0] not in statuses:
                    statuses[row[0]] = _status(*row[-3:])
                found.append(settled_as_read(_call(row[:-3]), statuses[row[0]]))
        return found

    async def load_tasks(self, run_id: str) -> dict[str, TaskResult]:
        def read(db: sqlite3.Connection) -> dict[str, TaskResult]:
            rows = db.execute("SELECT result FROM tasks WHERE run_id = ?", (run_id,))
            with reading_run(run_id, str(self.path)):
                results = [TaskResult.model_validate_json(row[0]) for row in rows]
            return {result.task_id: result for result in results}

        return await self._run(read)

    async def load_events(self, run_id: str) -> list[dict[str, Any]]:
        def read(db: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = db.execute("SELECT event FROM events WHERE run_id = ? ORDER BY seq", (run_id,))
            with reading_run(run_id, str(self.path)):
                return [_object(row[0]) for row in rows]

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
                with reading_run(run_id, str(self.path)):
                    holder = LeaseOwner.model_validate_json(row[0]) if row[0] else None
                if (
                    holder is not None
                    and holder.id != owner.id
                    and (row[1] or 0.0) > time.time()
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
            # The holder stays on record: a run it left ``running`` then reads ``crashed``.
            db.execute(
                "UPDATE runs SET lease_until = 0 WHERE run_id = ? AND lease_owner = ?",
                (run_id, owner.model_dump_json()),
            )

        await self._run(write)

    # --- approvals -------------------------------------------------------------------

    async def request_approval(self, approval: Approval) -> Approval:
        def write(db: sqlite3.Connection) -> Approval:
            with self._transaction(db):
                existing = _stored_approval(db, approval.run_id, approval.task_id, self.path)
                if existing is not None and existing.inputs == approval.inputs:
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
        return await self._run(lambda db: _stored_approval(db, run_id, task_id, self.path))

    async def list_approvals(
        self, status: ApprovalStatus | None = ApprovalStatus.pending
    ) -> list[Approval]:
        if self._absent():
            return []

        def read(db: sqlite3.Connection) -> list[Approval]:
            query = "SELECT run_id, approval FROM approvals"
            if status is None:
                rows = db.execute(f"{query} ORDER BY requested_at")
            else:
                rows = db.execute(
                    f"{query} WHERE status = ? ORDER BY requested_at", (status.value,)
                )
            found = []
            for run_id, text in rows:
                with reading_run(run_id, str(self.path)):
                    found.append(Approval.model_validate_json(text))
            return found

        return await self._run(read)

    async def decide(
        self, run_id: str, task_id: str, *, approved: bool, note: str | None
    ) -> Approval:
        def write(db: sqlite3.Connection) -> Approval:
            with self._transaction(db):
                current = _stored_approval(db, run_id, task_id, self.path)
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
                current = _stored_approval(db, run_id, task_id, self.path)
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


def _withdraw_pending(db: sqlite3.Connection, run_id: str, where: str) -> None:
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


def _append_events(db: sqlite3.Connection, run_id: str, events: Sequence[Any]) -> None:
    if not events:
        return
    (start,) = db.execute(
        "SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?", (run_id,)
    ).fetchone()
    _insert(
        db,
        "INSERT INTO events (run_id, seq, type, event)",
        [
            (run_id, start + offset, event.type, event.model_dump_json())
            for offset, event in enumerate(events, 1)
        ],
    )


_USAGE = "input_tokens, output_tokens, cache_read_tokens, cache_write_tokens"

_SUMS = "SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens)"

_CALL_COLUMNS = (
    "run_id, call_id, parent, purpose, task_id, worker, provider, model, answered_by, attempt,"
    f" started_at, latency, {_USAGE}, estimated, cost_usd, status, error_type, error,"
    " prompt, output"
)
_CALL_COLUMNS_READ = ", ".join(
    f"c.{column.strip()}" for column in _CALL_COLUMNS.split(",")[:-2]
)  # everything but the texts, which only some reads want


def _call_rows(calls: Sequence[CallRecord]) -> list[tuple[Any, ...]]:
    """Ledger records as rows, built on the caller's side (the writer thread stays short)."""
    return [
        (
            c.run_id,
            c.call_id,
            c.parent,
            c.purpose.value,
            c.task_id,
            c.worker,
            c.provider,
            c.model,
            c.answered_by,
            c.attempt,
            c.started_at,
            c.latency,
            *_tokens(c.usage),
            int(c.estimated),
            c.cost_usd,
            c.status.value,
            c.error_type,
            c.error,
            json.dumps(c.prompt) if c.prompt is not None else None,
            c.output,
        )
        for c in calls
    ]


def _put_calls(db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert or replace ledger rows; a settled row is never replaced by a ``started`` one.

    A call's start time never changes, so the update leaves ``started_at`` alone: SQLite
    then does not touch ``calls_by_time`` when a call settles (one B-tree less per row)."""
    updates = ", ".join(
        f"{column} = excluded.{column}"
        for column in (column.strip() for column in _CALL_COLUMNS.split(",")[2:])
        if column != "started_at"
    )
    _insert(
        db,
        f"INSERT INTO calls ({_CALL_COLUMNS})",
        rows,
        f"ON CONFLICT (run_id, call_id) DO UPDATE SET {updates} WHERE calls.status = 'started'"
        " OR excluded.status != 'started'",
    )


#: Bound values per statement: SQLite's lowest limit (``SQLITE_MAX_VARIABLE_NUMBER`` was
#: 999 before 3.32), so this works with any SQLite Python is built with.
_MAX_VARIABLES = 999


def _insert(db: sqlite3.Connection, head: str, rows: list[Any], tail: str = "") -> None:
    """``head VALUES (...), (...) tail``: a few statements for many rows, not one per row.

    A group of checkpoints inserts hundreds of rows in a wide fan-out; one statement per
    chunk saves ``executemany``'s per-row round trip into SQLite (a 500-task group: about
    15-21 ms instead of 21-28 ms, measured on the writer thread).
    """
    if not rows:
        return
    width = len(rows[0])
    mark = "(" + ", ".join("?" * width) + ")"
    per = _MAX_VARIABLES // width
    for start in range(0, len(rows), per):
        chunk = rows[start : start + per]
        values = [value for row in chunk for value in row]
        db.execute(f"{head} VALUES {', '.join([mark] * len(chunk))} {tail}", values)


def _call(row: Sequence[Any]) -> CallRecord:
    return CallRecord(
        run_id=row[0],
        call_id=row[1],
        parent=row[2],
        purpose=row[3],
        task_id=row[4],
        worker=row[5],
        provider=row[6],
        model=row[7],
        answered_by=row[8],
        attempt=row[9],
        started_at=row[10],
        latency=row[11],
        usage=_usage(row[12:16]),
        estimated=bool(row[16]),
        cost_usd=row[17],
        status=row[18],
        error_type=row[19],
        error=row[20],
        prompt=json.loads(row[21]) if row[21] is not None else None,
        output=row[22],
    )


def _tokens(usage: Usage) -> tuple[int, int, int, int]:
    """A usage as the four columns named in ``_USAGE``, in that order."""
    return (
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
    )


def _read_run(
    db: sqlite3.Connection, run_id: str, path: Path, *, with_plan: bool = True
) -> RunRecord:
    """One run and its latest plan, as ``get_run`` returns it and ``check`` tries it
    (without the plan, which ``check`` reads as a row of its own)."""
    row = db.execute(
        f"SELECT run_id, request, status, settings, answer, error, created_at,"
        f" updated_at, lease_owner, lease_until, {_USAGE} FROM runs WHERE run_id = ?",
        (run_id,),
    ).fetchone()
    if row is None:
        raise UnknownRunError(f"No run {run_id!r} in {path}. `foreman runs` lists the runs.")
    plan = (
        with_plan
        and db.execute(
            f"SELECT version, plan, {_USAGE} FROM plans WHERE run_id = ?"
            " ORDER BY version DESC LIMIT 1",
            (run_id,),
        ).fetchone()
    )
    booked = _ledger_books(db, [run_id]).get(run_id)
    with reading_run(run_id, str(path)):
        settings = _settings(row[3])
        if booked is None:  # stored before the ledger: its own total, priced the old way
            usage, price = _usage(row[10:]), _legacy_price(db, run_id, settings, row[10:])
            booked = (0, usage, price.cost_usd, price.unpriced)
        return RunRecord(
            run_id=row[0],
            request=row[1],
            status=_status(row[2], row[8], row[9]),
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
            plan_usage=_usage(plan[2:]) if plan else Usage(),
        )


def _ledger_books(
    db: sqlite3.Connection, run_ids: Sequence[str]
) -> dict[str, tuple[int, Usage, float | None, list[str]]]:
    """Calls, tokens, cost and unpriced models of each run that has a ledger."""
    if not run_ids:
        return {}
    marks = ", ".join("?" * len(run_ids))
    # Calls that had no price when they were made (or cut short in flight), priced now if
    # one is known, one by one as providers bill them: a sum could cross a price tier.
    late: dict[str, tuple[float, list[str]]] = {}
    unknown: set[str] = set()
    for run_id, model, *columns in db.execute(
        f"SELECT run_id, model, {_USAGE} FROM calls WHERE run_id IN ({marks}) AND cost_usd IS NULL",
        list(run_ids),
    ):
        usage = _usage(columns)
        if not usage.total_tokens:
            continue
        dollars, missing = late.get(run_id, (0.0, []))
        price = None if model in unknown else cost(model, usage)
        if price is None:
            unknown.add(model)  # one lookup per unpriced model, not one per call
            missing = missing if model in missing else [*missing, model]
        late[run_id] = (dollars + (price or 0.0), missing)
    found = {}
    for run_id, count, *columns in db.execute(
        f"SELECT run_id, COUNT(*), {_SUMS}, TOTAL(cost_usd)"
        f" FROM calls WHERE run_id IN ({marks}) GROUP BY run_id",
        list(run_ids),
    ):
        dollars, missing = late.get(run_id, (0.0, []))
        total = None if missing else columns[4] + dollars
        found[run_id] = (count, _usage(columns), total, missing)
    return found


def _legacy_price(
    db: sqlite3.Connection, run_id: str, settings: dict[str, Any], total: Sequence[Any]
) -> Cost:
    tasks = [
        (model, _usage(columns))
        for model, *columns in db.execute(
            f"SELECT model, {_USAGE} FROM tasks WHERE run_id = ?", (run_id,)
        )
    ]
    return run_price(settings.get("model"), _usage(total), tasks)


def _stored_approval(
    db: sqlite3.Connection, run_id: str, task_id: str, path: Path
) -> Approval | None:
    """The approval request of one task, if any; a damaged row is a corrupted run."""
    row = db.execute(
        "SELECT approval FROM approvals WHERE run_id = ? AND task_id = ?", (run_id, task_id)
    ).fetchone()
    with reading_run(run_id, str(path)):
        return Approval.model_validate_json(row[0]) if row else None


def _usage(columns: Sequence[Any]) -> Usage:
    """The four ``_USAGE`` columns (or their sums, NULL for none) as a usage."""
    i, o, r, w = (value or 0 for value in columns[:4])
    return Usage(input_tokens=i, output_tokens=o, cache_read_tokens=r, cache_write_tokens=w)


def _object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, found {type(value).__name__}")
    return value


def _settings(text: str) -> dict[str, Any]:
    return _object(text)


def _status(status: str, lease_owner: str | None, lease_until: float | None) -> RunStatus:
    holder = LeaseOwner.model_validate_json(lease_owner) if lease_owner else None
    return observed_status(RunStatus(status), holder, lease_until)


def _observed(db: sqlite3.Connection, run_id: str, path: Path) -> RunStatus:
    """The run's status as it stands now (``crashed`` derived); ``UnknownRunError``."""
    row = db.execute(
        "SELECT status, lease_owner, lease_until FROM runs WHERE run_id = ?", (run_id,)
    ).fetchone()
    if row is None:
        raise UnknownRunError(f"No run {run_id!r} in {path}. `foreman runs` lists the runs.")
    with reading_run(run_id, str(path)):
        return _status(*row)


def _summary(
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
            usage = _usage(row[9:])
            tasks = [(group[0], _usage(group[3:])) for group in per_model]
            price = run_price(_settings(row[3]).get("model"), usage, tasks)
        return RunSummary(
            run_id=row[0],
            request=row[1],
            status=_status(row[2], row[6], row[7]),
            tasks=row[8] or 0,
            tasks_done=sum(group[2] for group in per_model if group[1] == "succeeded"),
            usage=usage,
            cost=price.cost_usd,
            unpriced=price.unpriced,
            created_at=row[4],
            updated_at=row[5],
        )


def _row_problems(db: sqlite3.Connection, where: str) -> list[str]:
    """One line per stored row that cannot be read back."""
    checks: list[tuple[str, Callable[[tuple[Any, ...]], object]]] = [
        (
            "SELECT run_id, 'run', lease_owner FROM runs",
            lambda r: (
                _read_run(db, r[0], Path(where), with_plan=False),  # as `show` reads it
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
        ("SELECT run_id, 'event ' || seq, event FROM events", lambda r: _object(r[2])),
        (
            "SELECT run_id, 'approval of ' || task_id, approval FROM approvals",
            lambda r: Approval.model_validate_json(r[2]),
        ),
        (f"SELECT run_id, 'call ' || call_id, {_CALL_COLUMNS} FROM calls", lambda r: _call(r[2:])),
    ]
    problems = []
    for query, parse in checks:
        for row in db.execute(query):
            try:
                with reading_run(row[0], where):
                    parse(row)
            except StoreError as exc:
                problems.append(f"run {row[0]}: {row[1]} cannot be read ({_cause(exc)})")
    return problems


def _cause(exc: BaseException) -> str:
    return described(exc.__cause__ or exc)


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
