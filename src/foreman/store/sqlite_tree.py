"""Nested runs in SQLite: a run's subtree (``runs.parent_run_id``, migration 6) and its
books, summed over the subtree's ledgers.

A run's books are its own ledger rows plus every nested run's, at every depth; each row
belongs to exactly one run, so summing over the subtree counts every call once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from foreman.models.base import Usage
from foreman.store.sqlite_ledger import ledger_books

Booked = tuple[int, Usage, float | None, list[str]]

#: ``?`` and every run nested under it, at any depth.
SUBTREE = (
    "WITH RECURSIVE tree(id) AS (SELECT ? UNION ALL"
    " SELECT r.run_id FROM runs r JOIN tree ON r.parent_run_id = tree.id) SELECT id FROM tree"
)


def subtree(db: sqlite3.Connection, run_id: str) -> list[str]:
    """``run_id`` and its nested runs (the run first)."""
    return [row[0] for row in db.execute(SUBTREE, (run_id,))]


def tree_books(db: sqlite3.Connection, run_ids: Sequence[str]) -> dict[str, Booked]:
    """``ledger_books`` of each run summed over its subtree; runs without nested runs (the
    common case) cost one indexed lookup more."""
    trees = {run_id: subtree(db, run_id) for run_id in run_ids}
    booked = ledger_books(db, [tree for ids in trees.values() for tree in ids])
    found = {}
    for run_id, ids in trees.items():
        parts = [booked[tree] for tree in ids if tree in booked]
        if parts:
            found[run_id] = _sum(parts)
    return found


def _sum(parts: list[Booked]) -> Booked:
    if len(parts) == 1:
        return parts[0]
    missing = list(dict.fromkeys(model for part in parts for model in part[3]))
    dollars = None if missing else sum(part[2] or 0.0 for part in parts)
    return (
        sum(part[0] for part in parts),
        sum((part[1] for part in parts), Usage()),
        dollars,
        missing,
    )
