"""SQLite rows of the tool loops' journal (migration 7): answered turns and tool calls.

A call's row is replaced as it moves from ``started`` to ``finished``, never back: a
finished call is final, so a late or repeated ``started`` write cannot undo it.
"""

from __future__ import annotations

import sqlite3

from foreman.tools.records import ToolCallRecord, ToolCallStatus, ToolTurnRecord

#: Every table with rows of a run, children first (deleting a run empties them all).
TABLES_OF_A_RUN = (
    "tool_calls",
    "tool_turns",
    "calls",
    "events",
    "approvals",
    "tasks",
    "plans",
    "runs",
)


def put_turn(db: sqlite3.Connection, record: ToolTurnRecord) -> None:
    db.execute(
        "INSERT OR REPLACE INTO tool_turns (run_id, task_id, loop, turn, record)"
        " VALUES (?, ?, ?, ?, ?)",
        (record.run_id, record.task_id, record.loop, record.turn, record.model_dump_json()),
    )


def put_call(db: sqlite3.Connection, record: ToolCallRecord) -> None:
    db.execute(
        "INSERT INTO tool_calls (run_id, task_id, seq, tool, status, outcome, latency,"
        " started_at, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (run_id, task_id, seq) DO UPDATE SET tool = excluded.tool,"
        " status = excluded.status, outcome = excluded.outcome, latency = excluded.latency,"
        " started_at = excluded.started_at, record = excluded.record"
        " WHERE tool_calls.status != ?",
        (
            record.run_id,
            record.task_id,
            record.seq,
            record.tool,
            record.status.value,
            record.outcome.value if record.outcome else None,
            record.latency,
            record.started_at,
            record.model_dump_json(),
            ToolCallStatus.finished.value,
        ),
    )


def read_turns(db: sqlite3.Connection, run_id: str, task_id: str | None) -> list[ToolTurnRecord]:
    rows = db.execute(
        "SELECT record FROM tool_turns WHERE run_id = ? AND (? IS NULL OR task_id = ?)"
        " ORDER BY task_id, loop, turn",
        (run_id, task_id, task_id),
    ).fetchall()
    return [ToolTurnRecord.model_validate_json(row[0]) for row in rows]


def read_calls(db: sqlite3.Connection, run_id: str, task_id: str | None) -> list[ToolCallRecord]:
    rows = db.execute(
        "SELECT record FROM tool_calls WHERE run_id = ? AND (? IS NULL OR task_id = ?)"
        " ORDER BY started_at, task_id, seq",
        (run_id, task_id, task_id),
    ).fetchall()
    return [ToolCallRecord.model_validate_json(row[0]) for row in rows]
