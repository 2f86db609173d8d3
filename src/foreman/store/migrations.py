"""The SQLite schema, as numbered migrations applied in order.

``PRAGMA user_version`` holds the number of migrations applied. Add a migration by
appending to ``MIGRATIONS``; never edit one that has shipped.
"""

from __future__ import annotations

import sqlite3

from foreman.errors import StoreError

MIGRATIONS: list[str] = [
    # 1: runs, plan versions, task checkpoints, events, approvals
    """
    CREATE TABLE runs (
        run_id      TEXT PRIMARY KEY,
        request     TEXT NOT NULL,
        status      TEXT NOT NULL,
        settings    TEXT NOT NULL DEFAULT '{}',
        answer      TEXT,
        error       TEXT,
        input_tokens  INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        lease_owner TEXT,
        lease_until REAL,
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL
    );
    CREATE TABLE plans (
        run_id     TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        version    INTEGER NOT NULL,
        plan       TEXT NOT NULL,
        input_tokens  INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        PRIMARY KEY (run_id, version)
    );
    CREATE TABLE tasks (
        run_id        TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        task_id       TEXT NOT NULL,
        status        TEXT NOT NULL,
        model         TEXT,
        input_tokens  INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        result        TEXT NOT NULL,
        updated_at    REAL NOT NULL,
        PRIMARY KEY (run_id, task_id)
    );
    CREATE TABLE events (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        seq    INTEGER NOT NULL,
        type   TEXT NOT NULL,
        event  TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );
    CREATE TABLE approvals (
        run_id       TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        task_id      TEXT NOT NULL,
        status       TEXT NOT NULL,
        approval     TEXT NOT NULL,
        requested_at REAL NOT NULL,
        PRIMARY KEY (run_id, task_id)
    );
    CREATE INDEX approvals_by_status ON approvals(status, requested_at);
    CREATE INDEX runs_by_age ON runs(created_at);
    """,
    # 2: prompt-cache tokens wherever tokens are counted; a flag asking a run to stop
    """
    ALTER TABLE runs ADD COLUMN cache_read_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE plans ADD COLUMN cache_read_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE plans ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN cache_read_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0;
    """,
    # 3: the call ledger, one row per model call attempt
    """
    CREATE TABLE calls (
        run_id      TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        call_id     TEXT NOT NULL,
        parent      TEXT NOT NULL,
        purpose     TEXT NOT NULL,
        task_id     TEXT,
        worker      TEXT,
        provider    TEXT NOT NULL,
        model       TEXT NOT NULL,
        answered_by TEXT,
        attempt     INTEGER NOT NULL,
        started_at  REAL NOT NULL,
        latency     REAL NOT NULL,
        input_tokens       INTEGER NOT NULL DEFAULT 0,
        output_tokens      INTEGER NOT NULL DEFAULT 0,
        cache_read_tokens  INTEGER NOT NULL DEFAULT 0,
        cache_write_tokens INTEGER NOT NULL DEFAULT 0,
        estimated   INTEGER NOT NULL DEFAULT 0,
        cost_usd    REAL,
        status      TEXT NOT NULL,
        error_type  TEXT,
        error       TEXT,
        prompt      TEXT,
        output      TEXT,
        PRIMARY KEY (run_id, call_id)
    );
    CREATE INDEX calls_by_time ON calls(started_at);
    """,
    # 4: the newest calls of each (purpose, worker, model) without reading the whole
    # ledger: what `foreman plan` estimates from (Store.recent_calls)
    """
    CREATE INDEX calls_by_group ON calls(purpose, worker, model, started_at);
    """,
    # 5: plan revisions: why each version was written and what it changed (JSON: added,
    # changed, dropped task ids); NULL for a first plan
    """
    ALTER TABLE plans ADD COLUMN reason TEXT;
    ALTER TABLE plans ADD COLUMN changes TEXT;
    """,
    # 6: nested runs: a run carrying out a task of another run points at that run and task
    """
    ALTER TABLE runs ADD COLUMN parent_run_id TEXT;
    ALTER TABLE runs ADD COLUMN parent_task_id TEXT;
    CREATE INDEX runs_by_parent ON runs(parent_run_id);
    """,
    # 7: tool loops: each answered model turn, and each tool call (written `started`
    # before the tool runs, `finished` with its result): resume repeats neither
    """
    CREATE TABLE tool_turns (
        run_id  TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        task_id TEXT NOT NULL,
        loop    INTEGER NOT NULL,
        turn    INTEGER NOT NULL,
        record  TEXT NOT NULL,
        PRIMARY KEY (run_id, task_id, loop, turn)
    );
    CREATE TABLE tool_calls (
        run_id     TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        task_id    TEXT NOT NULL,
        seq        INTEGER NOT NULL,
        tool       TEXT NOT NULL,
        status     TEXT NOT NULL,
        outcome    TEXT,
        latency    REAL,
        started_at REAL NOT NULL,
        record     TEXT NOT NULL,
        PRIMARY KEY (run_id, task_id, seq)
    );
    """,
    # 8: memory: workers' outputs with their embeddings (float32 blobs), kept across runs
    # (no foreign key: deleting a run keeps what it taught); docs/memory.md
    """
    CREATE TABLE memories (
        memory_id  INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id     TEXT NOT NULL,
        task_id    TEXT NOT NULL,
        worker     TEXT NOT NULL,
        text       TEXT NOT NULL,
        embedder   TEXT NOT NULL,
        vector     BLOB NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX memories_by_run ON memories(run_id);
    CREATE INDEX memories_by_embedder ON memories(embedder, memory_id);
    """,
]


def refuse_foreign(connection: sqlite3.Connection, path: str) -> None:
    """Refuse a database another program made, before anything is written to it: a
    mistyped ``--db`` must never turn someone's database into a run store (new tables,
    WAL mode). Foreman's own has a schema version (``user_version``, set with its first
    tables) and a ``runs`` table; a file with tables and not both is another's."""
    names = [
        name
        for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if names and ("runs" not in names or version == 0):
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise StoreError(
            f"{path} is not a foreman run store: it is another program's SQLite database "
            f"(tables: {shown}). Give foreman a file of its own with --db or FOREMAN_DB."
        )


def migrate(connection: sqlite3.Connection, path: str) -> None:
    """Bring the database to the current schema, in one ``BEGIN IMMEDIATE`` transaction.

    The version is read inside the write transaction, so two processes opening a new file at
    once cannot both see version 0 and both create the tables: the second waits for the
    first's commit (busy timeout), then finds the schema current and does nothing.
    """
    if connection.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS):
        return  # the common case, without taking the write lock
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(
                f"The database {path} has schema version {version}, newer than this foreman "
                f"understands ({len(MIGRATIONS)}). Upgrade foreman, or use another --db."
            )
        for number in range(version + 1, len(MIGRATIONS) + 1):
            for statement in _statements(MIGRATIONS[number - 1]):
                connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _statements(script: str) -> list[str]:
    """A migration's statements one by one: ``executescript`` would commit our transaction."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements
