"""What a resumed run starts from: the books of its earlier executions (their ledger, or
the totals of a run stored before there was one), and a raised budget kept with it."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from foreman.ledger.books import Books
from foreman.ledger.budget import Budget
from foreman.ledger.records import CallRecord, CallStatus, carried_over
from foreman.results import RunStatus, TaskResult
from foreman.store.base import RunRecord, Store

log = logging.getLogger(__name__)


async def record_budget(store: Store, record: RunRecord, budget: Budget) -> None:
    """Make ``budget`` the run's own, so a later resume without one keeps it; a store
    written before ``update_settings`` existed cannot, and the budget holds for this
    execution only (as it did then)."""
    try:
        settings = {**record.settings, "budget": budget.model_dump()}
        await store.update_settings(record.run_id, settings)
    except NotImplementedError:
        log.warning(
            "run %s: %s cannot record the raised budget; a later resume uses the run's "
            "original one unless it is given again",
            record.run_id,
            type(store).__name__,
        )


async def books_before(
    store: Store, record: RunRecord, tasks: Mapping[str, TaskResult]
) -> tuple[Books, list[CallRecord]]:
    """What earlier executions of a run spent, and their calls: its ledger, calls cut
    short by a crash marked ``interrupted`` for good (they read so already)."""
    if record.calls:
        calls = await store.list_calls(run_id=record.run_id)  # no texts: only the books
        if any(call.status is CallStatus.interrupted for call in calls):
            # Written back as they read, prompts included (a write replaces the whole row).
            full = await store.list_calls(run_id=record.run_id, with_prompts=True)
            cut_short = [call for call in full if call.status is CallStatus.interrupted]
            await store.save_calls(record.run_id, cut_short)
        return Books.of(calls), calls
    carried = await carry_over(store, record, tasks)
    return Books.of(carried), carried


async def carry_over(
    store: Store, record: RunRecord, tasks: Mapping[str, TaskResult]
) -> list[CallRecord]:
    """A run stored before the ledger existed has only its totals: an execution that ended
    stored one; one that died without a word left its plan and task checkpoints to count.
    They become its first ledger row, so books summed from the ledger keep them."""
    if record.status in (RunStatus.running, RunStatus.crashed):
        usage = sum((task.usage for task in tasks.values()), record.plan_usage)
        dollars = None  # priced at the run's model
    else:
        usage, dollars = record.usage, record.cost_usd
    if not usage.total_tokens:
        return []
    model = record.unpriced[0] if record.unpriced else record.settings.get("model")
    row = carried_over(record.run_id, usage, dollars, model, record.created_at)
    await store.save_calls(record.run_id, [row])
    return [row]
