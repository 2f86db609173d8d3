"""Per-run budgets: limits on tokens, dollars, wall time and model calls.

A ``Budget`` is configuration (``Orchestrator(budget=...)``, the CLI's ``--budget-*``
flags, a team file's ``budget:`` section). A ``BudgetMeter`` spends one during an
execution: the call ledger asks it before each call starts (``admit``) and tells it of
each record (``count``), so it knows what the whole run has spent at every moment:
the books of earlier executions plus this one's calls, those in flight at their estimate.
Counting as records arrive keeps the check O(1) per call, however long the run.

A limit is reached when what was spent is at least the limit. From then on no call
starts; the calls already running finish (``on_limit="finish"``) or are cancelled
(``"cancel"``, recorded ``cancelled`` with their input tokens estimated). The books can
therefore end above a limit by what the calls in flight spent. Wall time counts the
run's executions only: time paused (waiting for approval, interrupted, over budget)
does not count, and neither does the time between a run and its resume.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from foreman.errors import BudgetExceededError, ConfigError
from foreman.ledger.books import Books
from foreman.ledger.records import CallRecord, CallStatus
from foreman.models.pricing import cost, priced

if TYPE_CHECKING:
    from foreman.ledger.recorder import CallLedger

OnLimit = Literal["finish", "cancel"]

#: The limits, in the order they are checked (the first one reached is reported).
LIMITS = ("max_calls", "max_tokens", "max_cost_usd", "max_seconds")


class Budget(BaseModel):
    """Limits on what one run may spend, over all its executions; ``None`` is no limit.

    ``max_tokens`` counts every token of every call (input, output, cache);
    ``max_cost_usd`` prices each call at its own model (every model the run may call
    needs a known price); ``max_seconds`` is the wall time of the run's executions;
    ``max_calls`` counts call attempts, retries and failed ones included. ``on_limit``:
    at a limit, calls already running ``finish`` (the default) or are ``cancel``-led.
    """

    # Strict numbers: a team file's `max_calls: true` (or "5") is a mistake, not 1 (or 5).
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    max_tokens: int | None = Field(None, gt=0, description="Tokens of every call.")
    max_cost_usd: float | None = Field(None, gt=0, allow_inf_nan=False, description="US dollars.")
    max_seconds: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="Seconds of execution."
    )
    max_calls: int | None = Field(None, gt=0, description="Model call attempts.")
    on_limit: OnLimit = Field("finish", description="What running calls do at a limit.")

    @property
    def limited(self) -> bool:
        return any(getattr(self, limit) is not None for limit in LIMITS)


def budget_from(fields: Mapping[str, Any], where: str) -> Budget:
    """A ``Budget`` from plain settings (a team file, CLI flags, stored run settings), or a
    one-line ``ConfigError`` naming ``where`` and what is wrong."""
    try:
        return Budget.model_validate(dict(fields))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'budget'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigError(f"{where}: {problems}.") from None


def check_priced(budget: Budget | None, models: Iterable[str]) -> None:
    """A cost limit needs a price for every model the run calls: a call without one would
    spend unseen. ``ConfigError`` naming those without, before anything is spent."""
    if budget is None or budget.max_cost_usd is None:
        return
    unpriced = [name for name in dict.fromkeys(models) if not priced(name)]
    if unpriced:
        raise ConfigError(
            f"max_cost_usd needs a price for every model, and {', '.join(unpriced)} has none. "
            "Set FOREMAN_PRICES (e.g. '{\"model-id\": [input, output]}', dollars per "
            "million tokens), or limit tokens instead (max_tokens)."
        )


def exceeded(limit: str, used: float, allowed: float) -> BudgetExceededError:
    """The error for a reached limit, e.g. ``budget exceeded: cost $0.0500 >=
    max_cost_usd $0.05``: what was used, then the limit's own name and value."""
    if limit == "max_cost_usd":
        spent = f"cost ${used:.4f} >= max_cost_usd ${allowed:g}"
    elif limit == "max_seconds":
        spent = f"time {used:.1f}s >= max_seconds {allowed:g}s"
    else:
        spent = f"{limit.removeprefix('max_')} {used:.0f} >= {limit} {allowed:.0f}"
    return BudgetExceededError(f"budget exceeded: {spent}", limit=limit, used=used, allowed=allowed)


_LIMIT_IN_ERROR = re.compile(r"^budget exceeded: \S+ \S+ >= (max_\w+) ")


def limit_in(error: str | None) -> str | None:
    """The limit a stored run error names (``max_cost_usd``...), or None."""
    found = _LIMIT_IN_ERROR.match(error or "")
    return found.group(1) if found else None


def executed_seconds(events: Iterable[Mapping[str, Any]]) -> float:
    """Seconds a run spent executing, from its stored events (JSON objects, in order).

    Each execution runs from its ``run_started``: to its ``run_finished`` (the time it
    measured itself) or, when it was interrupted or died, to its last stored event. The
    time between executions (paused, waiting) is not counted.
    """
    total = 0.0
    start: float | None = None
    last = 0.0
    for event in events:
        kind, at = event.get("type"), float(event.get("at", 0.0))
        if kind == "run_started":
            if start is not None:
                total += last - start
            start = last = at
        elif start is not None and kind == "run_finished":
            total += float(event.get("result", {}).get("elapsed", at - start))
            start = None
        elif start is not None:
            last = at
    if start is not None:
        total += last - start
    return total


class BudgetMeter:
    """One execution spending a run's budget; attach it to the execution's ledger.

    ``before`` and ``seconds_before`` are what earlier executions spent. ``on_exceeded``
    hears the first limit reached, once; ``cancel`` stops the calls in flight when the
    budget says ``cancel`` (the engine cancels what runs them). ``timer`` measures wall
    time (injected: tests use a fake one).
    """

    def __init__(
        self,
        budget: Budget,
        *,
        before: Books | None = None,
        seconds_before: float = 0.0,
        on_exceeded: Callable[[BudgetExceededError], None] | None = None,
        cancel: Callable[[], None] | None = None,
        timer: Callable[[], float] = time.perf_counter,
        upstream: tuple[BudgetMeter, str] | None = None,
    ) -> None:
        before = before or Books()
        self.budget = budget
        self.calls = before.calls
        self.tokens = before.usage.total_tokens
        self.dollars = before.cost_usd or 0.0
        self.seconds_before = seconds_before
        self.on_exceeded = on_exceeded
        self.cancel = cancel
        self.timer = timer
        self.started = timer()
        #: The first limit reached (set once); every call after it is refused.
        self.exceeded: BudgetExceededError | None = None
        #: True once calls in flight were cancelled because of the budget.
        self.cancelled = False
        self._ledger: CallLedger | None = None
        self._dollars: dict[str, float] = {}  # priced only when a cost limit is set
        #: The meter of the run this one is nested in, and this run's id there: spending
        #: here counts there as it happens, and a call here waits on its limits too, so
        #: nested runs side by side cannot each spend the whole of what is left.
        self.upstream = upstream
        #: What each nested run of this one forwarded while it ran (calls, tokens, $).
        self._live: dict[str, list[float]] = {}
        #: The meters of the nested runs running now: their calls in flight are this run's
        #: to cancel at a limit, as its own are.
        self._nested: set[BudgetMeter] = set()
        if upstream is not None:
            upstream[0]._nested.add(self)
        self._watchdog: asyncio.TimerHandle | None = None

    def attach(self, ledger: CallLedger) -> None:
        """Meter ``ledger``'s calls; with a time limit to cancel at, start the watchdog."""
        self._ledger = ledger
        ledger.budget = self
        if self.budget.max_seconds is not None and self.budget.on_limit == "cancel":
            self._arm()

    def detach(self) -> None:
        """The run's execution ended: no watchdog, and no longer a nested run in flight."""
        self._disarm()
        if self.upstream is not None:
            self.upstream[0]._nested.discard(self)

    def _disarm(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    @property
    def cancelled_by(self) -> BudgetExceededError | None:
        """The limit whose reaching cancelled the calls in flight here: this run's, or that
        of a run it is nested in (whose cancel reaches its nested runs' calls)."""
        meter: BudgetMeter | None = self
        while meter is not None:
            if meter.cancelled:
                return meter.exceeded
            meter = meter.upstream[0] if meter.upstream is not None else None
        return None

    @property
    def seconds(self) -> float:
        return self.seconds_before + self.timer() - self.started

    def reached(self) -> BudgetExceededError | None:
        """The first limit reached now, if any."""
        budget = self.budget
        for limit, used in (
            ("max_calls", self.calls),
            ("max_tokens", self.tokens),
            ("max_cost_usd", self.dollars),
        ):
            allowed = getattr(budget, limit)
            if allowed is not None and used >= allowed:
                return exceeded(limit, used, allowed)
        if budget.max_seconds is not None and (spent := self.seconds) >= budget.max_seconds:
            return exceeded("max_seconds", spent, budget.max_seconds)
        return None

    def settle_nested(self, run_id: str, before: Books, now: Books) -> None:
        """A nested run ended: its stored books, which went from ``before`` to ``now``
        (its whole subtree, in ledgers this meter does not see), replace what its meter
        forwarded while it ran."""
        calls, tokens, dollars = self._live.pop(run_id, (0, 0, 0.0))
        self._spend(
            now.calls - before.calls - calls,
            now.usage.total_tokens - before.usage.total_tokens - tokens,
            (now.cost_usd or 0.0) - (before.cost_usd or 0.0) - dollars,
        )

    def _spend(self, calls: float, tokens: float, dollars: float) -> None:
        self.calls += calls
        self.tokens += tokens
        self.dollars += dollars
        if self.upstream is not None:
            meter, run_id = self.upstream
            live = meter._live.setdefault(run_id, [0, 0, 0.0])
            live[0] += calls
            live[1] += tokens
            live[2] += dollars
            meter._spend(calls, tokens, dollars)

    def settled(self) -> BudgetExceededError | None:
        """The limit that stopped the run (``exceeded``), said with what the books show now
        that the calls then in flight have settled: a limit of tokens or dollars is
        reached counting those calls at their estimates, which they may settle below."""
        stop = self.exceeded
        if stop is None or stop.limit not in ("max_tokens", "max_cost_usd"):
            return stop
        if getattr(self.budget, stop.limit) != stop.allowed:
            return stop  # a limit of a run this one is nested in
        now = self.tokens if stop.limit == "max_tokens" else self.dollars
        if now >= stop.allowed:
            return exceeded(stop.limit, now, stop.allowed)
        shown = f"{now:.0f}" if stop.limit == "max_tokens" else f"${now:.4f}"
        return BudgetExceededError(
            f"{stop} (counting the calls then in flight at their estimates; {shown} once "
            "they settled)",
            limit=stop.limit,
            used=stop.used,
            allowed=stop.allowed,
        )

    def admit(self) -> None:
        """Before a call starts: ``BudgetExceededError`` once a limit is reached."""
        if self.exceeded is None:
            if (reached := self._reached_here_or_above()) is None:
                return
            self._exceed(reached)
        assert self.exceeded is not None
        stop = self.exceeded  # a fresh error per refusal: tracebacks must not pile up
        raise exceeded(stop.limit, stop.used, stop.allowed)

    def _reached_here_or_above(self) -> BudgetExceededError | None:
        """The first limit reached, this run's or that of a run it is nested in."""
        meter: BudgetMeter | None = self
        while meter is not None:
            if (reached := meter.reached()) is not None:
                return reached
            meter = meter.upstream[0] if meter.upstream is not None else None
        return None

    def count(self, old: CallRecord | None, new: CallRecord) -> None:
        """A record was written (``old`` is the version it replaces); under ``cancel``, a
        settled call that reaches a limit stops the calls still in flight."""
        dollars = 0.0
        if self.budget.max_cost_usd is not None:
            price = new.cost_usd
            if price is None:
                price = cost(new.model, new.usage) or 0.0
            dollars = price - self._dollars.get(new.call_id, 0.0)
            self._dollars[new.call_id] = price
        tokens = new.usage.total_tokens - (old.usage.total_tokens if old else 0)
        self._spend(old is None, tokens, dollars)
        meter: BudgetMeter | None = self if new.status.settled else None
        while meter is not None:  # a nested run's call counts on every run above it
            if (
                meter.exceeded is None
                and meter.budget.on_limit == "cancel"
                and meter._in_flight()
                and (reached := meter.reached()) is not None
            ):
                meter._exceed(reached)
            meter = meter.upstream[0] if meter.upstream is not None else None

    def _exceed(self, reached: BudgetExceededError) -> None:
        self.exceeded = reached
        self._disarm()
        if self.budget.on_limit == "cancel" and self._in_flight() and self.cancel is not None:
            self.cancelled = True
            if self._ledger is not None:
                self._ledger.stopping = CallStatus.cancelled
            self.cancel()
        if self.on_exceeded is not None:
            self.on_exceeded(reached)

    def _in_flight(self) -> bool:
        """Calls in flight in this run or in a nested run of it."""
        own = self._ledger is not None and self._ledger.in_flight > 0
        return own or any(nested._in_flight() for nested in self._nested)

    def _arm(self) -> None:
        assert self.budget.max_seconds is not None
        remaining = self.budget.max_seconds - self.seconds
        loop = asyncio.get_running_loop()
        self._watchdog = loop.call_later(max(0.0, remaining), self._times_up)

    def _times_up(self) -> None:
        """The time limit passed: cancel the calls in flight (none: the next is refused)."""
        self._watchdog = None
        if self.exceeded is not None:
            return
        if (reached := self.reached()) is None:
            self._arm()  # the timer and the loop's clock disagree by a hair: look again
        elif self._in_flight():
            self._exceed(reached)


def within(own: Budget | None, share: Budget | None) -> Budget | None:
    """The narrower of two budgets, limit by limit: a nested run's own budget (its team
    file's) within its share of its parent's; the parent's ``on_limit`` holds."""
    if own is None or share is None:
        return own or share
    limits = {
        limit: min(values)
        for limit in LIMITS
        if (values := [v for v in (getattr(own, limit), getattr(share, limit)) if v is not None])
    }
    return Budget(on_limit=share.on_limit, **limits)
