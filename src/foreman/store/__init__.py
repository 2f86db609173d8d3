"""Durable runs: the store interface, SQLite (default) and in-memory implementations."""

from foreman.store.base import (
    Approval,
    ApprovalStatus,
    Checkpoint,
    LeaseOwner,
    RunRecord,
    RunSummary,
    Store,
)
from foreman.store.memory import MemoryStore
from foreman.store.sqlite import SQLiteStore, default_db_path

__all__ = [
    "Approval",
    "ApprovalStatus",
    "Checkpoint",
    "LeaseOwner",
    "MemoryStore",
    "RunRecord",
    "RunSummary",
    "SQLiteStore",
    "Store",
    "default_db_path",
]
