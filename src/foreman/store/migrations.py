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
]


def migrate(connection: sqlite3.Connection, path: str) -> None:
    """Bring the database to the current schema, in one transaction per migration."""
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise StoreError(
            f"The database {path} has schema version {version}, newer than this foreman "
            f"understands ({len(MIGRATIONS)}). Upgrade foreman, or use another --db."
        )
    for number in range(version + 1, len(MIGRATIONS) + 1):
        connection.executescript(
            f"BEGIN IMMEDIATE; {MIGRATIONS[number - 1]}; PRAGMA user_version = {number}; COMMIT;"
        )
