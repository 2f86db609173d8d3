"""One record per model call attempt: the ledger the run's books are summed from.

A settled record is written with the checkpoint that covers it (the task's, the plan's,
the run's final update), so the ledger and the run's state never disagree. A call still in
flight is written early as ``started`` with its input tokens estimated (``Store.save_calls``
when no checkpoint goes with it); if the process dies, that row reads as ``interrupted`` and
the books still count what the provider most likely charged. Replays, and the rows a resume
settles for good (calls cut short, a pre-ledger run's ``legacy`` row), are written alone.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from foreman.models.base import Usage
from foreman.models.pricing import FROM_ENVIRONMENT, first_price

#: The error of a call still ``started`` when its process died, as stores read it.
CRASHED = "the process ended during the call"


class CallStatus(StrEnum):
    started = "started"  # in flight (stored early so a crash cannot hide it)
    ok = "ok"  # answered, and the answer was usable
    error = "error"  # the provider refused or failed, or the answer did not parse
    timeout = "timeout"  # no answer within the call's timeout
    cancelled = "cancelled"  # stopped on purpose (foreman cancel, a budget)
    interrupted = "interrupted"  # stopped by Ctrl-C, a signal or a crash

    @property
    def settled(self) -> bool:
        return self is not CallStatus.started


class CallPurpose(StrEnum):
    plan = "plan"
    task = "task"
    review = "review"
    synthesis = "synthesis"
    delegate = "delegate"  # a turn of the delegating orchestrator (``mode="delegate"``)
    replay = "replay"  # a task run again on its recorded input (``foreman replay``)
    replan = "replan"  # the orchestrator revising the plan after tasks settled
    #: What a run spent before the ledger existed (a store from an older foreman), carried
    #: over as one row when the run is resumed or replayed, so its books keep it.
    legacy = "legacy"
    #: Older results condensed so what the orchestrator reads fits its context budget.
    compaction = "compaction"
    #: A router choosing a task's worker (``--router llm``, docs/routing.md).
    route = "route"


class CallRecord(BaseModel):
    """One attempt at one model call, failed and retried ones included.

    ``parent`` names what the call belongs to: ``plan``, ``task:<id>`` (the task's own
    calls and its reviews), ``synthesis``, ``replan``, ``delegate`` (the delegating
    orchestrator's turns) or ``replay:<id>``. ``cost_usd`` is priced at
    this call's own model; ``None`` when that model has no known price. ``estimated``
    marks input tokens counted locally because no answer (and so no provider count) came.
    """

    run_id: str
    call_id: str
    parent: str
    purpose: CallPurpose
    task_id: str | None = None
    worker: str | None = None
    provider: str
    model: str = Field(description="The model asked, as foreman names it.")
    answered_by: str | None = Field(None, description="The model id the provider answered with.")
    attempt: int = Field(1, description="1 for the first call of its parent, counting on.")
    started_at: float = Field(default_factory=time.time)
    latency: float = 0.0
    usage: Usage = Field(default_factory=Usage)
    estimated: bool = False
    cost_usd: float | None = None
    status: CallStatus = CallStatus.started
    error_type: str | None = None
    error: str | None = None
    prompt: dict[str, Any] | None = Field(
        None, description="What the model was sent (system, messages); None when not kept."
    )
    output: str | None = Field(None, description="What the model answered; None when not kept.")

    @property
    def failed(self) -> bool:
        return self.status not in (CallStatus.ok, CallStatus.started)

    @property
    def timed(self) -> bool:
        """Its ``latency`` is a measure: settled by this process, not in flight, and not
        cut short by the process dying (a crashed call's time is unknown, not zero), and
        not the totals of a run stored before the ledger."""
        return (
            self.status.settled and self.error != CRASHED and self.purpose is not CallPurpose.legacy
        )


def provider_of(model: str) -> str:
    """``openai:gpt-5`` -> ``openai``; ``local`` -> ``local``; a bare id -> ``unknown``."""
    provider, sep, _ = model.partition(":")
    if sep:
        return provider
    return "local" if model == "local" else "unknown"


def carried_over(
    run_id: str, usage: Usage, cost_usd: float | None, model: str | None, at: float
) -> CallRecord:
    """The one row that stands for what a run stored before the ledger spent: its totals
    (priced the old way, at ``cost_usd``; None prices them at ``model``)."""
    model = model or "unknown"
    return CallRecord(
        run_id=run_id,
        call_id="legacy",
        parent="legacy",
        purpose=CallPurpose.legacy,
        provider=provider_of(model),
        model=model,
        started_at=at,
        usage=usage,
        cost_usd=cost_usd,
        status=CallStatus.ok,
    )


def price_of(record: CallRecord) -> float | None:
    """At the model that answered (a dated id prices exactly), else the one asked for; a
    price of the user's own (``FOREMAN_PRICES``) for either comes before a listed one."""
    return price_at(record.provider, record.model, record.answered_by, record.usage)


def price_at(
    provider: str,
    model: str,
    answered_by: str | None,
    usage: Usage,
    prices: str | None = FROM_ENVIRONMENT,
) -> float | None:
    """``price_of`` a record not built yet (the ledger prices a call as it settles, at the
    ``FOREMAN_PRICES`` its run started with: ``prices``)."""
    if answered_by and provider in ("openai", "anthropic"):
        return first_price((f"{provider}:{answered_by}", model), usage, prices)
    return first_price((model,), usage, prices)
