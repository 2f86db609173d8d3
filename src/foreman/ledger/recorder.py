"""Recording each model call attempt of a run as it happens.

``CallLedger`` belongs to one execution of a run. The engine opens a ``CallScope`` for
what a call is for (planning, a task, its review, synthesis, a replay) and hands it to the
retry loop, which opens one ``OpenCall`` per attempt and closes it with the answer or the
error. Records wait in the ledger until the journal writes them with the next checkpoint
(``take``); a call that starts asks for an early write (``on_start``), so that a process
that dies mid-call leaves a ``started`` row with its input tokens estimated.

Opening a call is on every task's way to its model, so it only notes the facts (ids,
times, the request); the ``started`` record is built when first looked at (the early
write, ``records``), and not at all for a call that settles before that. In a wide
fan-out, every task's start cost delays the start of all the tasks after it.

Clock, timer and ids are injected: the same code runs inside a Temporal workflow.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any

from foreman.errors import ConfigError
from foreman.ledger.records import CallPurpose, CallRecord, CallStatus, price_at, provider_of
from foreman.models.base import ModelRequest, ModelResponse, Usage
from foreman.models.pricing import own_prices
from foreman.models.retry import STOPPED

if TYPE_CHECKING:
    from foreman.ledger.budget import BudgetMeter

OnCall = Callable[[CallRecord], None]

#: Characters per token when no provider count exists (the usual rule of thumb for
#: English text; an estimate is flagged as one wherever it is shown).
CHARS_PER_TOKEN = 4


#: Call ids: 48 random bits, like ``secrets.token_hex(6)`` but without a system call per
#: id (``os.urandom`` also releases the GIL, handing it to the store's writer thread in the
#: middle of a burst of starts). Private, so a program's own ``random.seed`` cannot make
#: two processes that resume the same run draw the same ids; reseeded in a forked child
#: for the same reason. Ids name calls, they guard nothing: no secret is needed.
_IDS = random.Random()
os.register_at_fork(after_in_child=_IDS.seed)


def estimate_input_tokens(request: ModelRequest) -> int:
    """Tokens the request most likely costs, counted locally (no tokenizer download).

    Providers bill the tools and the output schema as input too (the planner's schema is
    a large part of its prompt), so they are counted with the messages."""
    chars = len(request.system or "")
    for message in request.messages:  # a loop, not a generator: one object less a call
        chars += message.chars
    if request.output_schema is not None:
        chars += _json_length(request.output_schema)
    for tool in request.tools:
        chars += len(tool.name) + len(tool.description) + len(json.dumps(tool.parameters))
    return -(-chars // CHARS_PER_TOKEN)


#: (key, id of its value) -> the value (kept, so its id is not reused) and the length of
#: the item in JSON: ``len(json.dumps({key: value})) - 2``.
_ITEM_LENGTHS: dict[tuple[Any, int], tuple[Any, int]] = {}


def _json_length(schema: dict[str, Any]) -> int:
    """``len(json.dumps(schema))``, its items measured once each.

    Every request copies its worker's schema dict, but not the values in it (the same
    objects, from the worker's schema built once), and encoding a structured worker's
    schema on each call costs more than the rest of opening it."""
    if not schema:
        return 2
    total = 2 * len(schema)  # the braces, and ", " between items
    for key, value in schema.items():
        known = _ITEM_LENGTHS.get((key, id(value)))
        if known is None or known[0] is not value:
            if len(_ITEM_LENGTHS) >= 4096:
                _ITEM_LENGTHS.clear()
            known = _ITEM_LENGTHS[(key, id(value))] = (value, len(json.dumps({key: value})) - 2)
        total += known[1]
    return total


class CallLedger:
    """Every call attempt of one run's execution, in the order they started.

    ``keep_prompts=False`` stores no prompt or output text (sensitive deployments).
    ``write_started=False`` leaves in-flight calls out of ``take`` (a store that does not
    survive the process gains nothing from their ``started`` rows: a wide fan-out would
    build and store a thousand records only to replace them; they settle before the
    run's last write). ``on_start`` hears that a call started (the journal schedules an
    early write);
    ``on_end`` hears each settled record (logs, traces).
    """

    def __init__(
        self,
        run_id: str,
        *,
        keep_prompts: bool = True,
        write_started: bool = True,
        on_start: Callable[[], None] | None = None,
        on_end: OnCall | None = None,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.perf_counter,
        new_id: Callable[[], str] = lambda: f"{_IDS.getrandbits(48):012x}",
        parent: CallLedger | None = None,
    ) -> None:
        self.run_id = run_id
        self.keep_prompts = keep_prompts
        self.write_started = write_started
        self.on_start = on_start
        self.on_end = on_end
        self.clock = clock
        self.timer = timer
        self.new_id = new_id
        #: The ledger of the run this one is nested in: a run stopped on purpose stops
        #: its nested runs' calls the same way (``stopping``).
        self.parent = parent
        self._stopping = CallStatus.interrupted
        #: The run's budget, when it has one: asked before each call starts, told of
        #: each record (``BudgetMeter.attach`` sets it).
        self.budget: BudgetMeter | None = None
        # By call id, in the order calls started; None: started, record not built yet.
        self._records: dict[str, CallRecord | None] = {}
        self._unwritten: dict[str, CallRecord | None] = {}
        self._unbuilt: dict[str, OpenCall] = {}  # by call id
        self._open: dict[str, OpenCall] = {}
        #: Calls opened and not settled yet: in the totals at their estimate, which is
        #: made when the totals are read (``usage``, ``usage_of``), not as a call opens. In a
        #: wide fan-out every call's start delays the start of all after it, and most calls
        #: settle before anyone reads the totals: their estimate is never made at all.
        self._uncounted: dict[str, OpenCall] = {}
        self._attempts: dict[str, int] = {}
        self._by_parent: dict[str, dict[str, Usage | OpenCall]] = {}  # OpenCall: in flight
        #: The sum of every call's usage so far, kept as calls open and settle, so that
        #: ``usage`` costs the same at the thousandth call as at the first.
        self._spent = [0, 0, 0, 0]
        #: ``FOREMAN_PRICES`` as this execution started: its calls are priced at it.
        self.prices = own_prices()

    def scope(
        self, purpose: CallPurpose, *, task_id: str | None = None, worker: str | None = None
    ) -> CallScope:
        return CallScope(self, purpose, task_id=task_id, worker=worker)

    # --- books -------------------------------------------------------------------------

    @property
    def records(self) -> dict[str, CallRecord]:
        """Every record of this execution by call id; in-flight ones are ``started``."""
        self._build_started()
        return self._records  # type: ignore[return-value]  # every one built now

    @property
    def usage(self) -> Usage:
        """Tokens of every call so far, in-flight ones at their estimate."""
        i, o, r, w = self._spent
        for call in self._uncounted.values():
            i += call.estimate.input_tokens
        return Usage(input_tokens=i, output_tokens=o, cache_read_tokens=r, cache_write_tokens=w)

    def usage_of(self, parent: str) -> Usage:
        """Tokens of the calls of one parent (``plan``, ``task:<id>``...) so far."""
        return _total(self._by_parent.get(parent, {}).values())

    @property
    def calls(self) -> int:
        return len(self._records)

    @property
    def in_flight(self) -> int:
        """Calls started and not settled yet."""
        return len(self._open)

    # --- writing -----------------------------------------------------------------------

    @property
    def has_unwritten(self) -> bool:
        """Whether a record waits for a write (settled, or started since the last one)."""
        return bool(self._unwritten)

    def take(self, started: int | None = None) -> list[CallRecord]:
        """Records not written yet (settled, or started since the last write unless
        ``write_started`` is off), oldest first; at most ``started`` of the ``started``
        ones when given (the others wait for a later write, or settle meanwhile and are
        written settled: a wide fan-out's thousand started rows would otherwise hold every
        checkpoint behind one long write)."""
        if started is None or not self.write_started:
            if self.write_started:
                self._build_started()
            taken, self._unwritten = list(self._unwritten.values()), {}
            return taken  # type: ignore[return-value]  # every one built now
        taken, left, room, unbuilt = [], {}, started, self._unbuilt
        for call_id, record in self._unwritten.items():
            if record is None or not record.status.settled:
                if room == 0:
                    left[call_id] = record
                    continue
                room -= 1
                if record is None:  # built now, only if written now
                    self._records[call_id] = record = unbuilt[call_id].started_record()
            taken.append(record)
        self._unwritten = left
        # Still unbuilt: the started calls left for later (every unbuilt call is unwritten).
        self._unbuilt = {call_id: unbuilt[call_id] for call_id, r in left.items() if r is None}
        return taken

    @property
    def stopping(self) -> CallStatus:
        """What a call cut short by cancellation records: ``interrupted`` (Ctrl-C, a
        signal), or ``cancelled`` once the run, or a run it is nested in, was stopped on
        purpose (``foreman cancel``, a budget)."""
        if self._stopping is CallStatus.interrupted and self.parent is not None:
            return self.parent.stopping
        return self._stopping

    @stopping.setter
    def stopping(self, status: CallStatus) -> None:
        self._stopping = status

    def interrupt_open(self) -> None:
        """Close every call still in flight (Ctrl-C, cancel, a budget), tokens estimated."""
        for call in list(self._open.values()):
            call.close(CallStatus.interrupted, error=STOPPED)

    def unwritten(self, records: list[CallRecord]) -> None:
        """Put back records a write failed to store (unless a newer version is waiting)."""
        for record in records:
            self._unwritten.setdefault(record.call_id, self.records[record.call_id])

    def count_on(self, earlier: Iterable[CallRecord]) -> None:
        """Go on from ``earlier`` executions' calls (a resume, a replay): a parent's tries
        read 1, 2, 3 across them, never 1 twice, and its tokens (``usage_of``) include
        theirs, so a task run again reports all it cost. ``usage`` stays this execution's."""
        for record in earlier:
            if record.attempt > self._attempts.get(record.parent, 0):
                self._attempts[record.parent] = record.attempt
            self._by_parent.setdefault(record.parent, {})[record.call_id] = record.usage

    def _build_started(self) -> None:
        """Build the ``started`` records of the calls opened since the last look that are
        still in flight (one that settled meanwhile has its final record already)."""
        unbuilt, self._unbuilt = self._unbuilt, {}
        for call in unbuilt.values():
            call_id = call.call_id
            if self._records[call_id] is None:
                self._records[call_id] = record = call.started_record()
                if call_id in self._unwritten:
                    self._unwritten[call_id] = record

    def _put(self, record: CallRecord) -> None:
        call_id = record.call_id
        if self.budget is not None:
            self.budget.count(self._records.get(call_id), record)
        self._records[call_id] = record
        self._unwritten[call_id] = record
        calls = self._by_parent[record.parent]
        now = record.usage
        was, calls[call_id] = calls[call_id], now
        if isinstance(was, OpenCall):  # in flight until now: not in the totals yet
            del self._uncounted[call_id]
            self._count(now)
        elif was is not now:  # the totals move by the difference (a refusal: to nothing)
            spent = self._spent
            spent[0] += now.input_tokens - was.input_tokens
            spent[1] += now.output_tokens - was.output_tokens
            spent[2] += now.cache_read_tokens - was.cache_read_tokens
            spent[3] += now.cache_write_tokens - was.cache_write_tokens

    def _count(self, usage: Usage) -> None:
        spent = self._spent
        spent[0] += usage.input_tokens
        spent[1] += usage.output_tokens
        spent[2] += usage.cache_read_tokens
        spent[3] += usage.cache_write_tokens

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
        #: The id of the call of this scope that settled last.
        self.last: str | None = None
        #: A planner's or reviser's answers are judged once they arrive, and may be refused
        #: (``refuse_last``): the last one is told to ``on_end`` (logs, traces) only once
        #: judged, so they say what the books say (``release``).
        self.judged = purpose in (CallPurpose.plan, CallPurpose.replan)
        self._held: CallRecord | None = None

    def refuse_last(self, kind: str, why: str) -> None:
        """The last call answered, but its answer was refused after the fact (a plan that
        does not validate): on the books as an ``error`` of ``kind``, tokens kept."""
        record = self.ledger.records.get(self.last or "")
        if record is not None and record.status is CallStatus.ok:
            update = {"status": CallStatus.error, "error_type": kind, "error": why[:2000]}
            refused = record.model_copy(update=update)
            self.ledger._put(refused)
            if self._held is not None and self._held.call_id == refused.call_id:
                self._held = refused
        self.release()

    def release(self) -> None:
        """Tell ``on_end`` of the call held for its verdict, as it stands now."""
        held, self._held = self._held, None
        if held is not None and self.ledger.on_end is not None:
            self.ledger.on_end(held)

    def _ended(self, record: CallRecord) -> None:
        if self.ledger.on_end is None:
            return
        self.release()  # a call before it was judged as it stood
        if self.judged:
            self._held = record
        else:
            self.ledger.on_end(record)

    def open(self, model_name: str, request: ModelRequest) -> OpenCall:
        """A call attempt starts now: on the books at once as ``started``, input estimated.
        ``BudgetExceededError`` instead, when the run's budget allows no more calls."""
        ledger = self.ledger
        if ledger.budget is not None:
            ledger.budget.admit()
        call = OpenCall(
            self,
            ledger.new_id(),
            model_name,
            request,
            ledger._next_attempt(self.parent),
            ledger.clock(),
            ledger.timer(),
        )
        call_id = call.call_id
        ledger._open[call_id] = call
        ledger._records[call_id] = None
        if ledger.write_started:
            ledger._unwritten[call_id] = None
        ledger._unbuilt[call_id] = call
        # On the books at its estimate, made only if the totals are read before it settles.
        ledger._uncounted[call_id] = call
        ledger._by_parent.setdefault(self.parent, {})[call_id] = call
        if ledger.budget is not None:  # metered from the start: built now, not lazily
            record = call.started_record()
            ledger.budget.count(None, record)
            ledger._records[call_id] = record
            if ledger.write_started:
                ledger._unwritten[call_id] = record
        if ledger.on_start is not None:
            ledger.on_start()
        return call


class OpenCall:
    """One attempt in flight; ``close`` settles it exactly once."""

    def __init__(
        self,
        scope: CallScope,
        call_id: str,
        model: str,
        request: ModelRequest,
        attempt: int,
        started_at: float,
        started: float,
    ) -> None:
        self.scope = scope
        self.call_id = call_id
        self.model = model
        self.request = request
        self.attempt = attempt
        self.started_at = started_at
        self.started = started
        self._estimate: Usage | None = None
        self._prompt: dict[str, Any] | None = None

    @property
    def estimate(self) -> Usage:
        """The call's input tokens, estimated locally; made when first needed (a call
        that settles with an answer before its ``started`` row is built never needs it)."""
        if self._estimate is None:
            self._estimate = Usage(input_tokens=estimate_input_tokens(self.request))
        return self._estimate

    def started_record(self) -> CallRecord:
        """The call's record while in flight: its input estimated, priced at the run's
        prices now, so a run that dies with it in flight keeps the price it ran at."""
        fields = self._fields()
        fields["usage"] = usage = self.estimate
        fields["estimated"] = True
        try:
            fields["cost_usd"] = price_at(
                fields["provider"], self.model, None, usage, self.scope.ledger.prices
            )
        except ConfigError:  # a malformed price list: the call's close says so; the row
            pass  # is written all the same, priced when read (as any unpriced row)
        return CallRecord.model_validate(fields)

    def _fields(self) -> dict[str, Any]:
        scope = self.scope
        return {
            "run_id": scope.ledger.run_id,
            "call_id": self.call_id,
            "parent": scope.parent,
            "purpose": scope.purpose,
            "task_id": scope.task_id,
            "worker": scope.worker,
            "provider": provider_of(self.model),
            "model": self.model,
            "attempt": self.attempt,
            "started_at": self.started_at,
            "prompt": self._prompt_kept(),
        }

    def _prompt_kept(self) -> dict[str, Any] | None:
        if self._prompt is None and self.scope.ledger.keep_prompts:
            self._prompt = _prompt(self.request)
        return self._prompt

    def close(
        self,
        status: CallStatus | str,
        *,
        response: ModelResponse | None = None,
        error: BaseException | str | None = None,
    ) -> None:
        ledger = self.scope.ledger
        if ledger._open.pop(self.call_id, None) is None:
            return  # already settled (interrupt_open raced the attempt's own ending)
        status = _STATUSES.get(status) or CallStatus(status)  # a str from the retry loop
        if status is CallStatus.interrupted:
            status = ledger.stopping
        fields = self._fields()
        fields["status"] = status
        fields["latency"] = ledger.timer() - self.started
        answered_by = None
        if response is not None:
            fields["usage"] = usage = response.usage
            fields["estimated"] = False
            fields["answered_by"] = answered_by = response.model
            if ledger.keep_prompts:
                fields["output"] = response.text
        elif status is CallStatus.error:
            # Refused (rate limit, bad request): providers do not bill those. A call cut
            # short or timed out keeps its estimate: the provider may have done the work.
            usage = fields["usage"] = Usage()
            fields["estimated"] = False
        else:
            usage = fields["usage"] = self.estimate
            fields["estimated"] = True
        if error is not None:
            fields["error_type"] = type(error).__name__ if not isinstance(error, str) else None
            fields["error"] = str(error)[:2000]
            if response is not None and not ledger.keep_prompts:
                # An answer that did not parse: the error quotes it, and no text is kept.
                fields["error"] = str(error).split(":", 1)[0] + " (the answer is not recorded)"
        # Priced before it is built: one validation, no assignment after it (and from the
        # dict as it is: ``model_validate`` skips unpacking it into keywords and back).
        fields["cost_usd"] = price_at(
            fields["provider"], self.model, answered_by, usage, ledger.prices
        )
        record = CallRecord.model_validate(fields)
        ledger._put(record)
        self.scope.last = record.call_id
        self.scope._ended(record)


#: A status by its value (or itself): quicker than ``CallStatus(value)``.
_STATUSES: dict[str, CallStatus] = {status.value: status for status in CallStatus}


def _parent(purpose: CallPurpose, task_id: str | None) -> str:
    if task_id is None:
        return purpose.value
    kind = "replay" if purpose is CallPurpose.replay else "task"
    return f"{kind}:{task_id}"


def _prompt(request: ModelRequest) -> dict[str, Any]:
    return {"system": request.system, "messages": [m.as_record() for m in request.messages]}


def _settled(usage: Usage | OpenCall) -> Usage:
    """A call's tokens: its record's, or its estimate while in flight."""
    return usage.estimate if isinstance(usage, OpenCall) else usage


def _total(usages: Collection[Usage | OpenCall]) -> Usage:
    """The sum of ``usages`` (a call in flight at its estimate): the one there is as it is
    (a ``Usage`` is never changed in place), else one new ``Usage`` (not one per addition)."""
    if len(usages) == 1:
        for usage in usages:
            return _settled(usage)
    i = o = r = w = 0
    for each in usages:
        usage = _settled(each)
        i += usage.input_tokens
        o += usage.output_tokens
        r += usage.cache_read_tokens
        w += usage.cache_write_tokens
    return Usage(input_tokens=i, output_tokens=o, cache_read_tokens=r, cache_write_tokens=w)
