"""SQLite rows of the call ledger: writing records, reading them back, and summing a
run's books in SQL. Kept apart so that ``sqlite.py`` reads as the store's operations."""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from foreman.ledger.records import CallRecord
from foreman.models.base import Usage
from foreman.models.pricing import Cost, cost, run_price

USAGE_COLUMNS = "input_tokens, output_tokens, cache_read_tokens, cache_write_tokens"


USAGE_SUMS = (
    "SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens)"
)


CALL_COLUMNS = (
    "run_id, call_id, parent, purpose, task_id, worker, provider, model, answered_by, attempt,"
    f" started_at, latency, {USAGE_COLUMNS}, estimated, cost_usd, status, error_type, error,"
    " prompt, output"
)


CALL_COLUMNS_READ = ", ".join(
    f"c.{column.strip()}" for column in CALL_COLUMNS.split(",")[:-2]
)  # everything but the texts, which only some reads want


def rows_of_calls(calls: Sequence[CallRecord]) -> list[tuple[Any, ...]]:
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
            *token_columns(c.usage),
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


#: What a settling call's row updates: everything but its key and its start time (which
#: never changes, so SQLite does not touch ``calls_by_time`` when a call settles).
_CALL_UPDATES = ", ".join(
    f"{column} = excluded.{column}"
    for column in (column.strip() for column in CALL_COLUMNS.split(",")[2:])
    if column != "started_at"
)
_PUT_CALLS = (
    f"ON CONFLICT (run_id, call_id) DO UPDATE SET {_CALL_UPDATES}"
    " WHERE calls.status = 'started' OR excluded.status != 'started'"
)


def put_calls(db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert or replace ledger rows; a settled row is never replaced by a ``started`` one."""
    insert_rows(db, f"INSERT INTO calls ({CALL_COLUMNS})", rows, _PUT_CALLS)


#: Bound values per statement: SQLite's lowest limit (``SQLITE_MAX_VARIABLE_NUMBER`` was
#: 999 before 3.32), so this works with any SQLite Python is built with.
MAX_VARIABLES = 999


def insert_rows(db: sqlite3.Connection, head: str, rows: list[Any], tail: str = "") -> None:
    """``head VALUES (...), (...) tail``: a few statements for many rows, not one per row.

    A group of checkpoints inserts hundreds of rows in a wide fan-out; one statement per
    chunk saves ``executemany``'s per-row round trip into SQLite (a 500-task group: about
    15-21 ms instead of 21-28 ms, measured on the writer thread).
    """
    if not rows:
        return
    width = len(rows[0])
    per = MAX_VARIABLES // width
    for start in range(0, len(rows), per):
        chunk = rows[start : start + per]
        values = [value for row in chunk for value in row]
        db.execute(f"{head} VALUES {_marks(width, len(chunk))} {tail}", values)


@functools.lru_cache(maxsize=256)
def _marks(width: int, count: int) -> str:
    """``(?, ?), (?, ?)`` for ``count`` rows of ``width`` values, built once per shape
    (a one-task checkpoint asks for the same few on every write)."""
    return ", ".join(["(" + ", ".join("?" * width) + ")"] * count)


#: SQLite's largest integer: a bigger one cannot even be bound to a statement.
SQL_INT_MAX = 2**63 - 1


def sql_limit(limit: int) -> int:
    """A ``LIMIT`` any number of rows may ask for: one past SQLite's integers means all."""
    return min(limit, SQL_INT_MAX)


def call_from_row(row: Sequence[Any]) -> CallRecord:
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
        usage=usage_from_columns(row[12:16]),
        estimated=bool(row[16]),
        cost_usd=row[17],
        status=row[18],
        error_type=row[19],
        error=row[20],
        prompt=json.loads(row[21]) if row[21] is not None else None,
        output=row[22],
    )


def token_columns(usage: Usage) -> tuple[int, int, int, int]:
    """A usage as the four columns named in ``USAGE_COLUMNS``, in that order."""
    return (
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
    )


def ledger_books(
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
        f"SELECT run_id, model, {USAGE_COLUMNS} FROM calls"
        f" WHERE run_id IN ({marks}) AND cost_usd IS NULL",
        list(run_ids),
    ):
        usage = usage_from_columns(columns)
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
        f"SELECT run_id, COUNT(*), {USAGE_SUMS}, TOTAL(cost_usd)"
        f" FROM calls WHERE run_id IN ({marks}) GROUP BY run_id",
        list(run_ids),
    ):
        dollars, missing = late.get(run_id, (0.0, []))
        total = None if missing else columns[4] + dollars
        found[run_id] = (count, usage_from_columns(columns), total, missing)
    return found


def legacy_price(
    db: sqlite3.Connection, run_id: str, settings: dict[str, Any], total: Sequence[Any]
) -> Cost:
    tasks = [
        (model, usage_from_columns(columns))
        for model, *columns in db.execute(
            f"SELECT model, {USAGE_COLUMNS} FROM tasks WHERE run_id = ?", (run_id,)
        )
    ]
    return run_price(settings.get("model"), usage_from_columns(total), tasks)


def usage_from_columns(columns: Sequence[Any]) -> Usage:
    """The four ``USAGE_COLUMNS`` columns (or their sums, NULL for none) as a usage."""
    i, o, r, w = (value or 0 for value in columns[:4])
    return Usage(input_tokens=i, output_tokens=o, cache_read_tokens=r, cache_write_tokens=w)
