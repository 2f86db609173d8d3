"""The SQLite store's memory table (migration 8): the statements, each run on the store's
writer thread by ``SQLiteStore``. Vectors are float32 blobs, 1.5 KB for 384 dimensions."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from foreman.store.memories import MemoryEntry
from foreman.store.sqlite_ledger import SQL_INT_MAX, sql_limit

if TYPE_CHECKING:  # numpy loads with the first vector: not on every CLI start
    pass

_COLUMNS = "memory_id, run_id, task_id, worker, text, embedder, vector, created_at"


def add(db: sqlite3.Connection, entry: MemoryEntry, limit: int | None) -> int:
    import numpy as np

    cursor = db.execute(
        "INSERT INTO memories (run_id, task_id, worker, text, embedder, vector, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            entry.run_id,
            entry.task_id,
            entry.worker,
            entry.text,
            entry.embedder,
            np.asarray(entry.vector, dtype=np.float32).tobytes(),
            entry.created_at,
        ),
    )
    memory_id = int(cursor.lastrowid or 0)
    if limit is not None:  # the oldest go: ids only grow (AUTOINCREMENT never reuses one)
        db.execute(
            "DELETE FROM memories WHERE memory_id <= "
            "(SELECT memory_id FROM memories ORDER BY memory_id DESC LIMIT 1 OFFSET ?)",
            (limit,),
        )
    return memory_id


def select(
    db: sqlite3.Connection, run_id: str | None, embedder: str | None, limit: int | None
) -> list[MemoryEntry]:
    where, params = [], []
    if run_id is not None:
        where.append("run_id = ?")
        params.append(run_id)
    if embedder is not None:
        where.append("embedder = ?")
        params.append(embedder)
    sql = f"SELECT {_COLUMNS} FROM memories"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY memory_id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(sql_limit(limit))
    return [_entry(row) for row in db.execute(sql, params)]


def delete(db: sqlite3.Connection, memory_id: int) -> bool:
    if abs(memory_id) > SQL_INT_MAX:  # no row has such an id
        return False
    return db.execute("DELETE FROM memories WHERE memory_id = ?", (memory_id,)).rowcount > 0


def clear(db: sqlite3.Connection, run_id: str | None) -> int:
    if run_id is None:
        return db.execute("DELETE FROM memories").rowcount
    return db.execute("DELETE FROM memories WHERE run_id = ?", (run_id,)).rowcount


def _entry(row: tuple) -> MemoryEntry:
    import numpy as np

    memory_id, run_id, task_id, worker, text, embedder, vector, created_at = row
    return MemoryEntry(
        memory_id=memory_id,
        run_id=run_id,
        task_id=task_id,
        worker=worker,
        text=text,
        embedder=embedder,
        vector=np.frombuffer(vector, dtype=np.float32).tolist(),
        created_at=created_at,
    )
