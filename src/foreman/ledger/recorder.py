"""Recording each model call attempt of a run as it happens.

``CallLedger`` belongs to one execution of a run. The engine opens a ``CallScope`` for
what a call is for (planning, a task, its review, synthesis, a replay) and hands it to the
retry loop, which opens one ``OpenCall`` per attempt and closes it with the answer or the
error. Records wait in the ledger until the journal writes them with the next checkpoint
(``take``); a call that starts asks for an early write (``on_start``), so that a process
that dies mid-call leaves a ``started`` row with its input tokens estimated.

Clock, timer and ids are injected: the same code runs inside a Temporal workflow.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from foreman.ledger.records import CallPurpose, CallRecord, CallStatus, provider_of
from foreman.models.base import ModelRequest, ModelResponse, Usage
from foreman.models.pricing import cost, overridden

if TYPE_CHECKING:
    from foreman.ledger.budget import BudgetMeter

OnCall = Callable[[CallRecord], None]

STOPPED = "the call was stopped before it answered"

#: Characters per token when no provider count exists (the usual rule of thumb for
#: English text; an estimate is flagged as one wherever it is shown).
CHARS_PER_TOKEN = 4


def estimate_input_tokens(request: ModelRequest) -> int:
    """Tokens the request most likely costs, counted locally (no tokenizer download).

    Providers bill the tools and the output schema as input too (the planner's schema is
    a large part of its prompt), so they are counted with the messages."""
    chars = len(request.system or "") + sum(len(m.content) for m in request.messages)
    if request.output_schema is not None:
        chars += len(json.dumps(request.output_schema))
    for tool in request.tools:
        chars += len(tool.name) + len(tool.description) + len(json.dumps(tool.parameters))
    return -(-chars // CHARS_PER_TOKEN)


class CallLedger:
    """Every call attempt of one run's execution, in the order they started.

    ``keep_prompts=False`` stores no prompt or output text (sensitive deployments).
    ``on_start`` hears that a call started (the journal schedules an early write);
    ``on_end`` hears each settled record (logs, traces).
    """

    def __init__(
        self,
        run_id: str,
        *,
        keep_prompts: bool = True,
        on_start: Callable[[], None] | None = None,
        on_end: OnCall | None = None,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.perf_counter,
        new_id: Callable[[], str] = lambda: secrets.token_hex(6),
    ) -> None:
        self.run_id = run_id
        self.keep_prompts = keep_prompts
        self.on_start = on_start
        self.on_end = on_end
        self.clock = clock
        self.timer = timer
        self.new_id = new_id
        #: Every record of this execution by call id; in-flight ones are ``started``.
        self.records: dict[str, CallRecord] = {}
        #: What a call cut short by cancellation records: ``interrupted`` (Ctrl-C, a
        #: signal), or ``cancelled`` once the run was stopped on purpose.
        self.stopping = CallStatus.interrupted
        #: The run's budget, when it has one: asked before each call starts, told of
        #: each record (``BudgetMeter.attach`` sets it).
        self.budget: BudgetMeter | None = None
        self._unwritten: dict[str, CallRecord] = {}
        self._open: dict[str, OpenCall] = {}
        self._attempts: dict[str, int] = {}
        self._by_parent: dict[str, dict[str, Usage]] = {}
        self._earlier: dict[str, Usage] = {}  # tokens of earlier executions, by parent

    def scope(
        self, purpose: CallPurpose, *, task_id: str | None = None, worker: str | None = None
    ) -> CallScope:
        return CallScope(self, purpose, task_id=task_id, worker=worker)

    # --- books -------------------------------------------------------------------------

    @property
    def usage(self) -> Usage:
        """Tokens of every call so far, in-flight ones at their estimate."""
        return sum((record.usage for record in self.records.values()), Usage())

    def usage_of(self, parent: str) -> Usage:
        """Tokens of the calls of one parent (``plan``, ``task:<id>``...) so far."""
        return sum(self._by_parent.get(parent, {}).values(), self._earlier.get(parent, Usage()))

    @property
    def calls(self) -> int:
        return len(self.records)

    def count_on(self, earlier: Iterable[CallRecord]) -> None:
        """Continue from ``earlier`` executions' records of the run (a resume, a second
        replay): a parent's attempts number on (1, 2, 3, 4, not 1, 2, 1) and its tokens
        (``usage_of``) include theirs, so a resumed task's record keeps its failed calls.
        ``usage``, this execution's own spending, leaves them out."""
        for record in earlier:
            parent = record.parent
            self._attempts[parent] = max(record.attempt, self._attempts.get(parent, 0))
            self._earlier[parent] = self._earlier.get(parent, Usage()) + record.usage

    @property
    def in_flight(self) -> int:
        """Calls started and not settled yet."""
        return len(self._open)

    # --- writing -----------------------------------------------------------------------

    def take(self) -> list[CallRecord]:
        """Records not written yet (settled, or started since the last write), oldest first."""
        taken, self._unwritten = list(self._unwritten.values()), {}
        return taken

    def interrupt_open(self) -> None:
        """Close every call still in flight (Ctrl-C, cancel, a budget), tokens estimated."""
        for call in list(self._open.values()):
            call.close(CallStatus.interrupted, error=STOPPED)

    def unwritten(self, records: list[CallRecord]) -> None:
        """Put back records a write failed to store (unless a newer version is waiting)."""
        for record in records:
            self._unwritten.setdefault(record.call_id, self.records[record.call_id])

    def _put(self, record: CallRecord) -> None:
        if self.budget is not None:
            self.budget.count(self.records.get(record.call_id), record)
        self.records[record.call_id] = record
        self._unwritten[record.call_id] = record
        self._by_parent.setdefault(record.parent, {})[record.call_id] = record.usage

    def _next_attempt(self, parent: str) -> int:
        self._attempts[parent] = attempt = self._attempts.get(parent, 0) + 1
        return attempt


class CallScope:
    """What a series of calls is for. Attempts are numbered per parent, across models,
    retries, fallbacks, revisions and reviews, so a task's calls read 1, 2, 3..."""

    def __init__(
        self,
        ledger: CallLedger,
        purpose: CallPurpose,
        *,
        task_id: str | None = None,
        worker: str | None = None,
    ) -> None:
        self.ledger = ledger
        self.purpose = purpose
        self.task_id = task_id
        self.worker = worker
        self.parent = _parent(purpose, task_id)

    def open(self, model_name: str, request: ModelRequest) -> OpenCall:
        """A call attempt starts now: recorded at once as ``started``, input estimated.
        ``BudgetExceededError`` instead, when the run's budget allows no more calls."""
        ledger = self.ledger
        if ledger.budget is not None:
            ledger.budget.admit()
        record = CallRecord(
            run_id=ledger.run_id,
            call_id=ledger.new_id(),
            parent=self.parent,
            purpose=self.purpose,
            task_id=self.task_id,
            worker=self.worker,
            provider=provider_of(model_name),
            model=model_name,
            attempt=ledger._next_attempt(self.parent),
            started_at=ledger.clock(),
            usage=Usage(input_tokens=estimate_input_tokens(request)),
            estimated=True,
            prompt=_prompt(request) if ledger.keep_prompts else None,
        )
        call = OpenCall(self, record, ledger.timer())
        ledger._open[record.call_id] = call
        ledger._put(record)
        if ledger.on_start is not None:
            ledger.on_start()
        return call


class OpenCall:
    """One attempt in flight; ``close`` settles it exactly once."""

    def __init__(self, scope: CallScope, record: CallRecord, started: float) -> None:
        self.scope = scope
        self.record = record
        self.started = started

    def close(
        self,
        status: CallStatus | str,
        *,
        response: ModelResponse | None = None,
        error: BaseException | str | None = None,
    ) -> None:
        ledger = self.scope.ledger
        if ledger._open.pop(self.record.call_id, None) is None:
            return  # already settled (interrupt_open raced the attempt's own ending)
        status = CallStatus(status)
        if status is CallStatus.interrupted:
            status = ledger.stopping
        update: dict[str, Any] = {"status": status, "latency": ledger.timer() - self.started}
        if response is None and status is CallStatus.error:
            # Refused (rate limit, bad request): providers do not bill those. A call cut
            # short or timed out keeps its estimate: the provider may have done the work.
            update["usage"], update["estimated"] = Usage(), False
        if response is not None:
            update["usage"] = response.usage
            update["estimated"] = False
            update["answered_by"] = response.model
            if ledger.keep_prompts:
                update["output"] = response.text
        if error is not None:
            update["error_type"] = type(error).__name__ if not isinstance(error, str) else None
            update["error"] = str(error)[:2000]
        record = self.record.model_copy(update=update)
        record.cost_usd = price_of(record)
        ledger._put(record)
        if ledger.on_end is not None:
            ledger.on_end(record)


def _parent(purpose: CallPurpose, task_id: str | None) -> str:
    if task_id is None:
        return purpose.value
    kind = "replay" if purpose is CallPurpose.replay else "task"
    return f"{kind}:{task_id}"


def _prompt(request: ModelRequest) -> dict[str, Any]:
    return {
        "system": request.system,
        "messages": [message.model_dump() for message in request.messages],
    }


def price_of(record: CallRecord) -> float | None:
    """At the model that answered (a dated id prices exactly), else the one asked for; a
    price of the user's own (``FOREMAN_PRICES``) for either comes before a listed one."""
    names = [record.model]
    if record.answered_by and record.provider in ("openai", "anthropic"):
        names.insert(0, f"{record.provider}:{record.answered_by}")
    for name in names:
        if overridden(name):
            return cost(name, record.usage)
    for name in names:
        priced = cost(name, record.usage)
        if priced is not None:
            return priced
    return None
