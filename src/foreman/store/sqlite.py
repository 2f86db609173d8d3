"""The default store: one SQLite file in WAL mode, written from one dedicated thread.

Why a thread: sqlite3 calls block, and a commit can wait on the disk; running them on one
thread of their own (``writer.WriterThread``) keeps the event loop free and gives every
write a total order. Small checkpoints made while that thread is idle are the exception
(``SQLiteStore._write``): written on the loop on a connection that never waits.
Each group of checkpoints (``save_checkpoints``: the tasks that settled
together, their events and ledger rows) is one ``BEGIN IMMEDIATE ... COMMIT`` transaction,
so a crash (even SIGKILL) leaves either the whole group or none of it.
``synchronous=NORMAL`` makes commits durable against process crashes; a power cut may lose
the last few, never corrupt the file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from foreman.errors import (
    CorruptedRunError,
    RunLockedError,
    StoreError,
    StoreNotFoundError,
    UnknownRunError,
)
from foreman.ledger.records import CallRecord
from foreman.models.base import Usage
from foreman.plan.revise import PlanChanges
from foreman.plan.schema import Plan
from foreman.results import RunStatus, TaskResult
from foreman.store import sqlite_memories as memories
from foreman.store.base import (
    Approval,
    ApprovalStatus,
    Checkpoint,
    LeaseOwner,
    PlanVersion,
    RunRecord,
    RunSummary,
    Store,
    check_cancellable,
    check_deletable,
    choose_run,
    covers_same,
    decide_approval,
    reading_run,
    settled_as_read,
    start_approval,
)
from foreman.store.memories import MemoryEntry
from foreman.store.migrations import migrate, refuse_foreign
from foreman.store.sqlite_ledger import (
    CALL_COLUMNS_READ,
    USAGE_COLUMNS,
    call_from_row,
    insert_rows,
    put_calls,
    rows_of_calls,
    sql_limit,
    token_columns,
    usage_from_columns,
)
from foreman.store.sqlite_rows import (
    append_events,
    json_object,
    observed_status_of,
    read_run,
    require_run,
    row_problems,
    store_error,
    stored_approval,
    stored_status,
    summary_from_row,
    withdraw_pending,
)
from foreman.store.sqlite_tools import (
    TABLES_OF_A_RUN,
    put_call,
    put_turn,
    read_calls,
    read_turns,
)
from foreman.store.sqlite_tree import SUBTREE, subtree, tree_books
from foreman.store.writer import WriterThread
from foreman.tools.records import ToolCallRecord, ToolTurnRecord

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
        self,
        path: str | Path | None = None,
        *,
        busy_timeout: float = 5.0,
        create: bool = True,
        writes_on_loop: bool = True,
    ) -> None:
        self.path = Path(path).expanduser() if path else default_db_path()
        self.busy_timeout = busy_timeout
        self.create = create
        #: Small checkpoints may be written on the event loop's thread (``_write``).
        self.writes_on_loop = writes_on_loop
        self._writer = WriterThread("foreman-store")
        self._connection: sqlite3.Connection | None = None
        self._here: _LoopConnection | None = None
        #: The file the thread's connection opened (absolute: the working directory may
        #: change before the loop's connection is opened).
        self._file: str | None = None

    # --- plumbing --------------------------------------------------------------------

    async def _run(self, action: Callable[[sqlite3.Connection], T]) -> T:
        return await self._writer.run(lambda: self._call(action))

    async def _write(
        self, action: Callable[[sqlite3.Connection], T], rows: int, size: int = 0
    ) -> T:
        """A write of ``rows`` rows, about ``size`` bytes of text: on the writer thread, or
        here when that is cheaper.

        Handing a write to the thread and hearing back costs two wake-ups across threads,
        about as much CPU again as a one-task checkpoint's own SQL; a chain of tasks pays
        it on every link. So a small write made while the writer thread has nothing in
        hand runs here, on a connection of its own that never waits: a lock held by
        another process (busy timeout 0) sends the write to the thread, which waits for it
        as usual, and WAL checkpoints (the only syncs to disk under
        ``synchronous=NORMAL``) are left to the thread. Big groups still go to the thread,
        which writes them while the loop goes on."""
        small = rows <= LOOP_WRITE_ROWS and size <= LOOP_WRITE_BYTES
        if self.writes_on_loop and small and self._writer.idle:
            here = self._loop_connection()
            if here is not None:
                try:
                    result = here.write(action)
                except sqlite3.DatabaseError as exc:
                    raise store_error(exc, self.path) from exc
                if result is not _BUSY:
                    if here.commits >= CHECKPOINT_EVERY:
                        here.commits = 0
                        self._writer.post(lambda: self._call(_passive_checkpoint))
                    return result  # type: ignore[return-value]
        return await self._run(action)

    def _loop_connection(self) -> _LoopConnection | None:
        """This thread's own connection, once the thread's has set the file up; ``None``
        from any other thread than the first to ask (sqlite3 binds a connection to it)."""
        here = self._here
        if here is None:
            if self._connection is None or not self._file:
                return None
            try:
                here = _LoopConnection(self._file)
            except sqlite3.Error:  # the file is gone, say: the thread's connection will tell
                return None
            self._here = here
        return here if here.thread == threading.get_ident() else None

    def _call(self, action: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return action(self._connect())
        except sqlite3.DatabaseError as exc:
            raise store_error(exc, self.path) from exc

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = self._open()
            try:
                refuse_foreign(connection, str(self.path))
                self._use_wal(connection)
                connection.execute("PRAGMA synchronous=NORMAL")
                connection.execute("PRAGMA foreign_keys=ON")
                migrate(connection, str(self.path))
                self._file = connection.execute("PRAGMA database_list").fetchone()[2]
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _absent(self) -> bool:
        """No file (or an empty one), and none to create: a list of its runs is empty (not
        an error)."""
        return not self.create and self._connection is None and _nothing_at(self.path)

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
        if self.path.is_dir():
            raise StoreError(
                f"{self.path} is a folder, not a run store: give --db or FOREMAN_DB a file "
                f"path, e.g. {self.path / 'foreman.db'}"
            )
        if not self.create:
            # An empty file too: opening it would write foreman's tables into it.
            if not self.path.is_file() or _nothing_at(self.path):
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
        if self._here is not None:  # first: the thread's, closed last, folds the WAL in
            # From any thread: left open, the thread's close would not fold the WAL in, and
            # the garbage collector would close it later, on whatever thread it runs on.
            here, self._here = self._here, None
            here.close()

        def close() -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        if self._connection is not None:
            await self._writer.run(close)
        self._writer.stop()

    async def change_marker(self) -> Hashable:
        """``PRAGMA data_version`` (moves on every commit by another connection, in any
        process) with this connection's own ``total_changes()``: two integers, read
        without touching a table, so polling it costs next to nothing."""
        if self._absent():
            return None

        def read(db: sqlite3.Connection) -> tuple[int, int]:
            version = db.execute("PRAGMA data_version").fetchone()[0]
            return version, db.total_changes

        return await self._run(read)

    # --- memory (sqlite_memories) ------------------------------------------------------

    async def add_memory(self, entry: MemoryEntry, *, limit: int | None = None) -> int:
        def write(db: sqlite3.Connection) -> int:
            with self._transaction(db):
                return memories.add(db, entry, limit)

        return await self._run(write)

    async def list_memories(
        self, *, run_id: str | None = None, embedder: str | None = None, limit: int | None = None
    ) -> list[MemoryEntry]:
        return await self._run(lambda db: memories.select(db, run_id, embedder, limit))

    async def delete_memory(self, memory_id: int) -> bool:
        def write(db: sqlite3.Connection) -> bool:
            with self._transaction(db):
                return memories.delete(db, memory_id)

        return await self._run(write)

    async def clear_memories(self, *, run_id: str | None = None) -> int:
        def write(db: sqlite3.Connection) -> int:
            with self._transaction(db):
                return memories.clear(db, run_id)

        return await self._run(write)

    # --- runs ------------------------------------------------------------------------

    async def create_run(self, run: RunRecord) -> None:
        def write(db: sqlite3.Connection) -> None:
            with self._transaction(db):
                db.execute(
                    "INSERT INTO runs (run_id, request, status, settings, created_at, updated_at,"
                    " parent_run_id, parent_task_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run.run_id,
                        run.request,
                        run.status.value,
                        json.dumps(run.settings),
                        run.created_at,
                        run.updated_at,
                        run.parent_run_id,
                        run.parent_task_id,
                    ),
                )

        await self._run(write)

    async def get_run(self, run_id: str) -> RunRecord:
        return await self._run(lambda db: read_run(db, run_id, self.path))

    async def list_runs(self, limit: int = 50) -> list[RunSummary]:
        return await self._summaries("", (), "DESC", limit)

    async def child_runs(self, run_id: str) -> list[RunSummary]:
        return await self._summaries("WHERE r.parent_run_id = ?", (run_id,), "ASC", -1)

    async def _summaries(
        self, where: str, args: tuple[Any, ...], order: str, limit: int
    ) -> list[RunSummary]:
        """The runs ``where`` selects, by age in ``order``, as ``runs`` lists them."""
        if self._absent():
            return []
        limit = sql_limit(limit)
        chosen = f"FROM runs r {where} ORDER BY r.created_at {order} LIMIT ?"

        def read(db: sqlite3.Connection) -> list[RunSummary]:
            runs = db.execute(
                "SELECT r.run_id, r.request, r.status, r.settings, r.created_at, r.updated_at,"
                " r.lease_owner, r.lease_until,"
                " (SELECT CASE WHEN json_valid(plan) THEN json_array_length(plan, '$.tasks') END"
                "  FROM plans p"
                "  WHERE p.run_id = r.run_id ORDER BY version DESC LIMIT 1),"
                " r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens,"
                " r.error, r.parent_run_id, r.parent_task_id,"
                f" ({_PLANNED_DONE}) {chosen}",
                (*args, limit),
            ).fetchall()
            per_model: dict[str, list[tuple[Any, ...]]] = {row[0]: [] for row in runs}
            for run_id, *group in db.execute(  # every listed run's tasks, in one query
                "SELECT run_id, model, status, COUNT(*), SUM(input_tokens), SUM(output_tokens),"
                " SUM(cache_read_tokens), SUM(cache_write_tokens)"
                f" FROM tasks WHERE run_id IN (SELECT r.run_id {chosen})"
                " GROUP BY run_id, model, status",
                (*args, limit),
            ):
                per_model[run_id].append(tuple(group))
            booked = tree_books(db, [row[0] for row in runs])
            return [
                summary_from_row(row, per_model[row[0]], booked.get(row[0]), self.path)
                for row in runs
            ]

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
        call_rows = rows_of_calls(calls)

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
                        *(token_columns(usage) if usage else (None,) * 4),
                        time.time(),
                        run_id,
                    ),
                ).rowcount
                if not updated:
                    raise UnknownRunError(f"No run {run_id!r} in {self.path}.")
                append_events(db, run_id, events)
                put_calls(db, call_rows)
                if status is RunStatus.cancelled:
                    withdraw_pending(db, run_id, str(self.path))

        await self._run(write)

    async def resolve_run(self, ref: str) -> str:
        def read(db: sqlite3.Connection) -> str:
            if db.execute("SELECT 1 FROM runs WHERE run_id = ?", (ref,)).fetchone():
                return ref
            newest = "ORDER BY created_at DESC, run_id DESC"
            if ref == "last":  # the newest top-level run (a nested one if there is none)
                row = db.execute(
                    f"SELECT run_id FROM runs ORDER BY parent_run_id IS NOT NULL,"
                    f" {newest.removeprefix('ORDER BY ')} LIMIT 1"
                ).fetchone()
                if row is not None:
                    return row[0]
            rows = db.execute(
                "SELECT run_id, parent_run_id FROM runs"
                f" WHERE ? != '' AND substr(run_id, 1, length(?)) = ? {newest}",
                (ref, ref, ref),
            ).fetchall()
            top = [row[0] for row in rows if row[1] is None]  # nested ids extend a parent's
            return choose_run(ref, top or [row[0] for row in rows], str(self.path))

        return await self._run(read)

    async def cancel_run(self, run_id: str) -> RunStatus:
        def write(db: sqlite3.Connection) -> RunStatus:
            with self._transaction(db):
                status = observed_status_of(db, run_id, self.path)
                check_cancellable(run_id, status)
                if status is RunStatus.running:
                    db.execute("UPDATE runs SET cancel_requested = 1 WHERE run_id = ?", (run_id,))
                    return status
                db.execute(
                    "UPDATE runs SET status = ?, cancel_requested = 1, updated_at = ?"
                    " WHERE run_id = ?",
                    (RunStatus.cancelled.value, time.time(), run_id),
                )
                withdraw_pending(db, run_id, str(self.path))
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
                    status = observed_status_of(db, run_id, self.path)
                except CorruptedRunError:  # unreadable: deleting it is the way out
                    status = RunStatus.crashed
                check_deletable(run_id, status, force)
                for tree in subtree(db, run_id):  # the run and its nested runs
                    for table in TABLES_OF_A_RUN:
                        db.execute(f"DELETE FROM {table} WHERE run_id = ?", (tree,))

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
            return problems + row_problems(db, str(self.path))

        return await self._run(read)

    # --- plans and tasks ---------------------------------------------------------------

    async def save_plan(
        self,
        run_id: str,
        plan: Plan,
        usage: Usage | None = None,
        calls: Sequence[CallRecord] = (),
    ) -> int:
        return await self._add_plan(run_id, plan, usage, calls, None, None)

    async def save_revision(
        self,
        run_id: str,
        plan: Plan,
        usage: Usage | None = None,
        calls: Sequence[CallRecord] = (),
        *,
        reason: str,
        changes: PlanChanges,
    ) -> int:
        return await self._add_plan(run_id, plan, usage, calls, reason, changes)

    async def _add_plan(
        self,
        run_id: str,
        plan: Plan,
        usage: Usage | None,
        calls: Sequence[CallRecord],
        reason: str | None,
        changes: PlanChanges | None,
    ) -> int:
        usage = usage or Usage()
        call_rows = rows_of_calls(calls)
        changed = changes.model_dump_json() if changes is not None else None

        def write(db: sqlite3.Connection) -> int:
            with self._transaction(db):
                require_run(db, run_id, self.path)
                put_calls(db, call_rows)
                (version,) = db.execute(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM plans WHERE run_id = ?", (run_id,)
                ).fetchone()
                db.execute(
                    "INSERT INTO plans (run_id, version, plan, created_at, reason, changes,"
                    f" {USAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run_id,
                        version,
                        plan.model_dump_json(),
                        time.time(),
                        reason,
                        changed,
                        *token_columns(usage),
                    ),
                )
                return version

        return await self._run(write)

    async def list_plans(self, run_id: str) -> list[PlanVersion]:
        def read(db: sqlite3.Connection) -> list[PlanVersion]:
            require_run(db, run_id, self.path)
            rows = db.execute(
                f"SELECT version, plan, reason, changes, created_at, {USAGE_COLUMNS}"
                " FROM plans WHERE run_id = ? ORDER BY version",
                (run_id,),
            ).fetchall()
            with reading_run(run_id, str(self.path)):
                return [
                    PlanVersion(
                        version=row[0],
                        plan=Plan.model_validate_json(row[1]),
                        reason=row[2],
                        changes=PlanChanges.model_validate_json(row[3] or "{}"),
                        created_at=row[4],
                        usage=usage_from_columns(row[5:]),
                    )
                    for row in rows
                ]

        return await self._run(read)

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
        call_rows = rows_of_calls(calls)
        now = time.time()
        task_rows = [
            (
                run_id,
                c.result.task_id,
                c.result.status.value,
                c.result.model,
                c.result.model_dump_json(),
                now,
                *token_columns(c.result.usage),
            )
            for c in checkpoints
        ]
        events = [event for c in checkpoints for event in c.events]

        def write(db: sqlite3.Connection) -> None:
            with self._transaction(db):
                require_run(db, run_id, self.path)
                insert_rows(
                    db,
                    "INSERT OR REPLACE INTO tasks (run_id, task_id, status, model, result,"
                    f" updated_at, {USAGE_COLUMNS})",
                    task_rows,
                )
                append_events(db, run_id, events)
                put_calls(db, call_rows)

        # A task's output is in its row and in its ``task_finished`` event.
        size = 2 * sum(len(row[4]) for row in task_rows) + _call_text(call_rows)
        await self._write(write, len(task_rows) + len(events) + len(call_rows), size)

    async def save_calls(self, run_id: str, calls: Sequence[CallRecord]) -> None:
        call_rows = rows_of_calls(calls)

        def write(db: sqlite3.Connection) -> None:
            with self._transaction(db):
                require_run(db, run_id, self.path)
                put_calls(db, call_rows)

        await self._write(write, len(call_rows), _call_text(call_rows))

    async def list_calls(
        self,
        *,
        run_id: str | None = None,
        task_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        with_prompts: bool = False,
        descendants: bool = False,
    ) -> list[CallRecord]:
        if self._absent():
            return []
        texts = "c.prompt, c.output" if with_prompts else "NULL, NULL"
        where, args = ["1"], []
        for clause, value in (
            (f"c.run_id IN ({SUBTREE})" if descendants else "c.run_id = ?", run_id),
            ("c.task_id = ?", task_id),
            ("c.started_at >= ?", since),
            ("c.started_at < ?", until),
        ):
            if value is not None:
                where.append(clause)
                args.append(value)

        def read(db: sqlite3.Connection) -> list[CallRecord]:
            rows = db.execute(
                f"SELECT {CALL_COLUMNS_READ}, {texts}, r.status, r.lease_owner, r.lease_until"
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
                    f"SELECT {CALL_COLUMNS_READ}, NULL, NULL, r.status, r.lease_owner,"
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
                    statuses[row[0]] = stored_status(*row[-3:])
                found.append(settled_as_read(call_from_row(row[:-3]), statuses[row[0]]))
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
                return [json_object(row[0]) for row in rows]

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
                existing = stored_approval(db, approval.run_id, approval.task_id, self.path)
                if existing is not None and covers_same(existing, approval):
                    return existing
                require_run(db, approval.run_id, self.path)
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
        return await self._run(lambda db: stored_approval(db, run_id, task_id, self.path))

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
                current = stored_approval(db, run_id, task_id, self.path)
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
                require_run(db, run_id, self.path)
                current = stored_approval(db, run_id, task_id, self.path)
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

    # tool loops
    async def save_tool_turn(
        self, record: ToolTurnRecord, calls: Sequence[CallRecord] = ()
    ) -> None:
        call_rows = rows_of_calls(calls)

        def write(db: sqlite3.Connection) -> None:
            with self._transaction(db):
                require_run(db, record.run_id, self.path)
                put_turn(db, record)
                put_calls(db, call_rows)

        await self._run(write)

    async def save_tool_call(self, record: ToolCallRecord) -> None:
        def write(db: sqlite3.Connection) -> None:
            with self._transaction(db):
                require_run(db, record.run_id, self.path)
                put_call(db, record)

        await self._run(write)

    async def list_tool_turns(
        self, run_id: str, task_id: str | None = None
    ) -> list[ToolTurnRecord]:
        if self._absent():
            return []
        return await self._run(lambda db: read_turns(db, run_id, task_id))

    async def list_tool_calls(
        self, run_id: str, task_id: str | None = None
    ) -> list[ToolCallRecord]:
        if self._absent():
            return []
        return await self._run(lambda db: read_calls(db, run_id, task_id))


#: Rows a write may have to be made on the event loop's thread (``SQLiteStore._write``):
#: a task or two settling alone with their events and calls, about 0.1 ms of CPU. Groups
#: from a wide fan-out (hundreds of rows, milliseconds) go to the writer thread.
LOOP_WRITE_ROWS = 16
#: ...and bytes of text: ``CHECKPOINT_EVERY`` counts commits, which only bounds the WAL
#: (and what a power cut may lose) if each commit writes a few pages. A task with a long
#: output writes hundreds: on the thread, whose connection checkpoints by pages.
LOOP_WRITE_BYTES = 32 * 1024
#: Commits made on the loop between two WAL checkpoints handed to the writer thread
#: (SQLite's own default checkpoints every 1000 pages; a small checkpoint writes 6-10).
CHECKPOINT_EVERY = 100
_BUSY = object()


class _LoopConnection:
    """The event loop thread's connection: it never waits for a lock (busy timeout 0)
    and never checkpoints the WAL (``wal_autocheckpoint=0``), so a write on it costs CPU
    and page-cache writes only."""

    def __init__(self, file: str) -> None:
        self.thread = threading.get_ident()
        self.commits = 0
        # mode=rw: the file the thread's connection opened, never a new one. Used on
        # ``thread`` only (``SQLiteStore._loop_connection``), but closed from any.
        self.connection = sqlite3.connect(
            Path(file).as_uri() + "?mode=rw",
            uri=True,
            timeout=0,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            self.connection.execute("PRAGMA synchronous=NORMAL")
            self.connection.execute("PRAGMA foreign_keys=ON")
            self.connection.execute("PRAGMA wal_autocheckpoint=0")
        except BaseException:
            self.connection.close()
            raise

    def write(self, action: Callable[[sqlite3.Connection], T]) -> T | object:
        """``action``'s result, or ``_BUSY`` if another connection holds the write lock:
        then nothing was written (the transaction is rolled back), and the write can be
        made again elsewhere."""
        try:
            result = action(self.connection)
        except sqlite3.OperationalError as exc:
            self._abandon()
            if "locked" in str(exc) or "busy" in str(exc):
                return _BUSY
            raise
        except BaseException:
            self._abandon()
            raise
        self.commits += 1
        return result

    def _abandon(self) -> None:
        if self.connection.in_transaction:  # a COMMIT that failed leaves it open
            self.connection.execute("ROLLBACK")

    def close(self) -> None:
        self.connection.close()


#: How many of the latest plan's tasks succeeded: done counts what total counts (a for-each
#: task's items are tasks of their own, not in the plan). Each found by the tasks' key.
_PLANNED_DONE = (
    "SELECT COUNT(*) FROM"
    " (SELECT plan FROM plans p WHERE p.run_id = r.run_id ORDER BY version DESC LIMIT 1) l,"
    " json_each(CASE WHEN json_valid(l.plan) THEN l.plan ELSE '{}' END, '$.tasks') j,"
    " tasks t WHERE t.run_id = r.run_id AND t.task_id = j.value ->> 'id'"
    " AND t.status = 'succeeded'"
)


def _nothing_at(path: Path) -> bool:
    """No file there, or an empty one: no store yet (a folder is something, and an error)."""
    try:
        return not path.exists() or (path.is_file() and path.stat().st_size == 0)
    except OSError:
        return False


def _call_text(call_rows: list[tuple[Any, ...]]) -> int:
    """Bytes of prompt and answer text in ledger rows (``rows_of_calls``: the last two)."""
    return sum(len(row[-2] or "") + len(row[-1] or "") for row in call_rows)


def _passive_checkpoint(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
