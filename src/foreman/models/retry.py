"""Retrying a model call: per-call timeout, exponential backoff with jitter, transient only.

One loop serves every caller (workers, the quality gate, synthesis, the planner), so a
rate limit is handled the same way wherever it strikes. ``sleep`` and ``uniform`` are
injectable so tests check the backoff without waiting for it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from foreman.errors import ModelError, ModelTimeoutError, TransientModelError
from foreman.models.base import Model, ModelRequest, ModelResponse, Usage
from foreman.models.deadline import Deadline


class OpenedCall(Protocol):
    """One attempt in flight, as a call log sees it (``foreman.ledger`` implements it)."""

    def close(
        self,
        status: str,
        *,
        response: ModelResponse | None = None,
        error: BaseException | str | None = None,
    ) -> None: ...


class CallLog(Protocol):
    """Where attempts are recorded: ``open`` as one starts, then ``close`` it exactly once
    with ``ok``, ``error``, ``timeout`` or ``interrupted``."""

    def open(self, model_name: str, request: ModelRequest) -> OpenedCall: ...


#: Why a call that was cancelled has no answer.
STOPPED = "the call was stopped before it answered"

Uniform = Callable[[float, float], float]
Sleep = Callable[[float], Awaitable[Any]]


class RetryPolicy(BaseModel):
    """Exponential backoff with full jitter, applied to transient failures only."""

    model_config = ConfigDict(frozen=True)

    max_attempts: int = Field(3, ge=1, description="Calls per model, first one included.")
    initial_delay: float = Field(0.5, ge=0, description="Seconds before the first retry.")
    multiplier: float = Field(2.0, ge=1)
    max_delay: float = Field(20.0, ge=0)
    jitter: bool = True
    max_retry_after: float = Field(
        60.0, ge=0, description="Longest wait a provider's Retry-After can impose, in seconds."
    )

    def delay(
        self,
        retry_number: int,
        error: ModelError | None = None,
        *,
        uniform: Uniform = random.uniform,
    ) -> float:
        """Seconds to wait before retry ``retry_number`` (1-based) after ``error``.

        A provider that said how long to wait (``error.retry_after``) is obeyed, up to
        ``max_retry_after``: retrying sooner would only be refused again.
        """
        ceiling = min(self.max_delay, self.initial_delay * self.multiplier ** (retry_number - 1))
        backoff = uniform(0, ceiling) if self.jitter else ceiling
        asked = getattr(error, "retry_after", None)
        if asked is None:
            return backoff
        return max(backoff, min(asked, self.max_retry_after))


@dataclass
class CallOutcome:
    """The parsed answer of the first good attempt (``output``) or the last ``error``."""

    output: Any = None
    error: ModelError | None = None
    attempts: int = 0
    usage: Usage = field(default_factory=Usage)
    model: str | None = None


OnRetry = Callable[[int, ModelError, float], None]


def numbered_after(on_retry: OnRetry | None, earlier: int) -> OnRetry | None:
    """``on_retry`` counting on from ``earlier`` attempts, so events number the attempts of
    a whole task or planning (across models and corrections), not of one call."""
    if on_retry is None or not earlier:
        return on_retry  # nothing before: no wrapper to allocate
    return lambda attempt, error, delay: on_retry(earlier + attempt, error, delay)


async def complete_with_retry(
    model: Model,
    request: ModelRequest,
    policy: RetryPolicy,
    *,
    call_timeout: float | None = None,
    caller: str = "the call",
    parse: Callable[[ModelResponse], Any] = lambda response: response.text,
    on_retry: OnRetry | None = None,
    scope: CallLog | None = None,
    sleep: Sleep = asyncio.sleep,
    uniform: Uniform = random.uniform,
) -> CallOutcome:
    """Call ``model`` until an answer parses, a non-transient error, or attempts run out.

    Each attempt may take ``call_timeout`` seconds, else the model's own default; a call
    that runs out of time is a transient ``ModelTimeoutError``.
    ``on_retry(attempt, error, delay)`` hears of each failed attempt that will be retried.
    ``parse`` may raise a ``TransientModelError`` (such as ``OutputValidationError``) to
    have an answer of the wrong shape retried like a rate limit. ``scope``, when given,
    records every attempt in the run's call ledger, whatever its outcome.
    """
    timeout = call_timeout if call_timeout is not None else model.default_call_timeout
    # The record is built on the way out, not before the first call: in a wide fan-out,
    # every task's start cost delays the start of all the tasks after it.
    error: ModelError | None = None
    answered: list[Usage] = []  # every answer's tokens, whether it parsed or not
    # ``Model.complete_within`` as it is, inlined: one coroutine less per call.
    timed_by_loop = type(model).complete_within is Model.complete_within
    for attempt in range(1, policy.max_attempts + 1):
        call = scope.open(model.name, request) if scope is not None else None
        try:
            if timed_by_loop:
                with Deadline(timeout):
                    response = await model.complete(request)
            else:
                response = await model.complete_within(request, timeout)
        except TimeoutError:
            error = ModelTimeoutError(
                f"{model.name} gave no answer within {timeout:g}s ({caller}); raise "
                "its timeout if this is expected."
            )
            _close(call, "timeout", error=error)
        except ModelError as exc:
            error = exc
            if exc.answered is not None:  # an unusable answer the provider billed all the same
                answered.append(exc.answered.usage)
            _close(call, "error", response=exc.answered, error=exc)
            if not isinstance(exc, TransientModelError):
                return CallOutcome(error=error, attempts=attempt, usage=_spent(answered))
        except BaseException as exc:  # cancelled (Ctrl-C, a budget, cancel) or a bug: on the books
            stopped = isinstance(exc, asyncio.CancelledError | KeyboardInterrupt)
            _close(call, "interrupted", error=STOPPED if stopped else exc)  # a bug says which
            raise
        else:
            answered.append(response.usage)
            try:
                value = parse(response)
            except ModelError as exc:
                error = exc
                _close(call, "error", response=response, error=exc)
                if not isinstance(exc, TransientModelError):
                    usage = _spent(answered)
                    return CallOutcome(error=error, attempts=attempt, usage=usage)
            else:
                _close(call, "ok", response=response)
                usage = _spent(answered)
                return CallOutcome(
                    output=value, attempts=attempt, usage=usage, model=response.model
                )
        if attempt < policy.max_attempts:
            delay = policy.delay(attempt, error, uniform=uniform)
            if on_retry is not None:
                on_retry(attempt, error, delay)
            await sleep(delay)
    return CallOutcome(error=error, attempts=policy.max_attempts, usage=_spent(answered))


def _spent(answered: list[Usage]) -> Usage:
    """Tokens of every answer; the usual single answer's record is passed on as it is
    (a ``Usage`` is never changed in place), not copied into two new ones."""
    if len(answered) == 1:
        return answered[0]
    return sum(answered, Usage())


def _close(call: OpenedCall | None, status: str, **details: Any) -> None:
    if call is not None:
        call.close(status, **details)
