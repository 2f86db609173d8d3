"""Durable runs: the store interface, SQLite (default) and in-memory implementations."""

from foreman.store.base import (
    Approval,
    ApprovalStatus,
    Checkpoint,
    LeaseOwner,
    PlanVersion,
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
    "PlanVersion",
    "RunRecord",
    "RunSummary",
    "SQLiteStore",
    "Store",
    "default_db_path",
]
