"""The retry loop's contract with cancellation: a per-call timeout is a transient error
that is retried; a cancellation from outside (Ctrl-C, an aborted run) is not."""

from __future__ import annotations

import asyncio

import pytest

from foreman.errors import ModelTimeoutError
from foreman.models.base import Message, ModelRequest
from foreman.models.retry import RetryPolicy, complete_with_retry
from foreman.testing import ScriptedModel

REQUEST = ModelRequest(messages=[Message(role="user", content="hello")])
RETRY = RetryPolicy(max_attempts=3, initial_delay=0, jitter=False)


async def test_a_timed_out_call_is_retried_and_reported_as_a_model_timeout() -> None:
    model = ScriptedModel(["late", "late", "late"], latency=5)

    attempts = await complete_with_retry(model, REQUEST, RETRY, call_timeout=0.01)

    assert isinstance(attempts.error, ModelTimeoutError)
    assert attempts.attempts == 3
    assert len(model.requests) == 3


async def test_cancelling_a_call_propagates_and_is_not_retried() -> None:
    model = ScriptedModel(["late", "late", "late"], latency=5)
    call = asyncio.create_task(complete_with_retry(model, REQUEST, RETRY, call_timeout=1.0))
    await asyncio.sleep(0.01)

    call.cancel()

    with pytest.raises(asyncio.CancelledError):
        await call
    assert len(model.requests) == 1
