"""Asking the books: a ledger's calls grouped by worker, model, run or day.

Pure functions over ``CallRecord`` lists (``group_calls``), and ``call_stats`` to read
them from a store. ``foreman stats`` prints these; ``--json`` prints ``CallStats`` as they
are, so the field names are a contract: add, never rename.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from foreman.ledger.books import Books
from foreman.ledger.records import CallPurpose, CallRecord

if TYPE_CHECKING:
    from foreman.store.base import Store


class GroupBy(StrEnum):
    """What ``group_calls`` groups by (``foreman stats --by``)."""

    worker = "worker"
    model = "model"
    run = "run"
    day = "day"

    @property
    def field(self) -> str:
        """The ``CallStats`` field holding the group's key (a run's is ``run_id``)."""
        return "run_id" if self is GroupBy.run else self.value


_KEY_FIELDS = ("worker", "model", "run_id", "day")


class CallStats(BaseModel):
    """The calls of one group: counts, tokens, dollars and latency.

    Exactly one of ``worker``, ``model``, ``run_id`` and ``day`` is set: the group's key.
    Calls that belong to no worker (planning, synthesis) group under their purpose in
    parentheses: ``(plan)``, ``(synthesis)``. ``cost_usd`` is None when a model in
    ``unpriced`` spent tokens without a known price. Latencies are of settled calls
    (in-flight ones have none yet); None when there is none.
    """

    worker: str | None = None
    model: str | None = None
    run_id: str | None = None
    day: str | None = Field(None, description="UTC date, YYYY-MM-DD.")
    calls: int = 0
    failed_calls: int = Field(0, description="Calls that ended in error, timeout, cancelled...")
    retried_calls: int = Field(
        0, description="Calls made again after a failed attempt (retries and fallbacks)."
    )
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = 0.0
    unpriced: list[str] = Field(default_factory=list)
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    failure_rate: float = 0.0
    retry_rate: float = 0.0
    estimated_calls: int = Field(0, description="Calls whose input tokens are estimates.")

    @property
    def key(self) -> str:
        """The group's key; empty for the totals of every call."""
        return next((v for name in _KEY_FIELDS if (v := getattr(self, name)) is not None), "")

    def as_json(self) -> dict[str, Any]:
        """The JSON object of ``stats --json``: the group's own key and the figures."""
        unset = [name for name in _KEY_FIELDS if getattr(self, name) is None]
        return self.model_dump(mode="json", exclude=set(unset))


def group_key(record: CallRecord, by: GroupBy | str) -> str:
    """The group ``record`` falls in."""
    by = GroupBy(by)
    if by is GroupBy.worker:
        return record.worker or f"({record.purpose.value})"
    if by is GroupBy.model:
        return record.model
    if by is GroupBy.run:
        return record.run_id
    # gmtime floors to the second; fromtimestamp would round to the microsecond, putting a
    # call that started a hair before midnight in the next day.
    return time.strftime("%Y-%m-%d", time.gmtime(record.started_at))


def group_calls(records: Iterable[CallRecord], by: GroupBy | str = "worker") -> list[CallStats]:
    """The stats of ``records`` per group: days and runs in time order, workers and
    models by name."""
    by = GroupBy(by)
    records = sorted(records, key=lambda record: record.started_at)
    retries = retried_call_ids(records)
    groups: dict[str, list[CallRecord]] = {}
    for record in records:
        groups.setdefault(group_key(record, by), []).append(record)
    keys = list(groups) if by in (GroupBy.run, GroupBy.day) else sorted(groups)
    return [summarise(groups[key], {by.field: key}, retries) for key in keys]


def summarise(
    records: Sequence[CallRecord],
    key: dict[str, str] | None = None,
    retries: set[str] | None = None,
) -> CallStats:
    """One group's stats (no ``key``: the totals of all ``records``). ``retries``: ids
    of retry calls, from ``retried_call_ids`` over every record (a retry's failed
    predecessor may lie in another group)."""
    if retries is None:
        retries = retried_call_ids(records)
    books = Books.of(records)
    calls = len(records)
    failed = sum(record.failed for record in records)
    retried = sum(record.call_id in retries for record in records)
    latencies = sorted(record.latency for record in records if record.timed)
    return CallStats(
        **(key or {}),
        calls=calls,
        failed_calls=failed,
        retried_calls=retried,
        input_tokens=books.usage.input_tokens,
        output_tokens=books.usage.output_tokens,
        cache_read_tokens=books.usage.cache_read_tokens,
        cache_write_tokens=books.usage.cache_write_tokens,
        cost_usd=books.cost_usd,
        unpriced=books.unpriced,
        latency_p50_s=percentile(latencies, 50),
        latency_p95_s=percentile(latencies, 95),
        failure_rate=failed / calls if calls else 0.0,
        retry_rate=retried / calls if calls else 0.0,
        estimated_calls=sum(record.estimated for record in records),
    )


def retried_call_ids(records: Iterable[CallRecord]) -> set[str]:
    """Calls made again: after a call of the same run, parent and purpose failed (a retry
    after an error or timeout, a fallback to another model, the first call after a resume
    of one that was interrupted), and any second planning or synthesis call (asked once
    unless something went wrong: a plan that did not validate is asked for again). A
    review, or a revision a reviewer asked for, follows a call that succeeded: not a retry.
    """
    last_failed: dict[tuple[str, str, str], bool] = {}
    retried = set()
    for record in sorted(records, key=lambda record: record.started_at):
        series = (record.run_id, record.parent, record.purpose.value)
        once = record.purpose in (CallPurpose.plan, CallPurpose.synthesis)
        if last_failed.get(series) or (once and series in last_failed):
            retried.add(record.call_id)
        last_failed[series] = record.failed
    return retried


def percentile(ordered: Sequence[float], percent: float) -> float | None:
    """The ``percent``-th percentile of sorted values, linearly interpolated between the
    closest ranks (numpy's default): p50 of 1, 2, 3, 4 is 2.5. None without values."""
    if not ordered:
        return None
    position = (len(ordered) - 1) * percent / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _timestamp(moment: float | datetime | None) -> float | None:
    """Seconds since the epoch; a naive datetime is read as UTC (as the ledger's days are)."""
    if moment is None or isinstance(moment, int | float):
        return moment
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


async def call_stats(
    store: Store,
    by: GroupBy | str = "worker",
    since: float | datetime | None = None,
    until: float | datetime | None = None,
    run_id: str | None = None,
) -> list[CallStats]:
    """Stats of the calls in ``store`` that started in ``[since, until)``, of one run or
    of all, grouped ``by`` worker, model, run or day. Prompts are not read."""
    records = await store.list_calls(
        run_id=run_id, since=_timestamp(since), until=_timestamp(until), with_prompts=False
    )
    return group_calls(records, by)
