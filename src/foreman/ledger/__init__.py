"""The call ledger: one record per model call attempt, and the books summed from it."""

from foreman.ledger.budget import Budget, BudgetMeter
from foreman.ledger.recorder import CallLedger, CallScope
from foreman.ledger.records import CallPurpose, CallRecord, CallStatus
from foreman.ledger.stats import CallStats, GroupBy, call_stats, group_calls

__all__ = [
    "Budget",
    "BudgetMeter",
    "CallLedger",
    "CallPurpose",
    "CallRecord",
    "CallScope",
    "CallStats",
    "CallStatus",
    "GroupBy",
    "call_stats",
    "group_calls",
]
