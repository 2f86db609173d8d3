"""The call ledger: one record per model call attempt, and the books summed from it."""

from foreman.ledger.budget import Budget, BudgetMeter
from foreman.ledger.recorder import CallLedger, CallScope
from foreman.ledger.records import CallPurpose, CallRecord, CallStatus

__all__ = [
    "Budget",
    "BudgetMeter",
    "CallLedger",
    "CallPurpose",
    "CallRecord",
    "CallScope",
    "CallStatus",
]
