"""Retry behaviour that seeded bugs (mutation testing, issue 6) changed without a test failing:
the default backoff schedule, a ``max_retry_after`` of 0 that ignores Retry-After, and a
policy that never waits (every bound 0); a policy cannot be changed in place."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from foreman.errors import RateLimitError
from foreman.models.retry import RetryPolicy


def test_the_default_backoff_starts_at_half_a_second_and_doubles_up_to_20s() -> None:
    policy = RetryPolicy(jitter=False)
    assert policy.max_attempts == 3
    assert [policy.delay(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 20, 20]


def test_the_default_jitter_draws_between_zero_and_the_backoff() -> None:
    drawn: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        drawn.append((low, high))
        return high / 2

    assert RetryPolicy().delay(2, uniform=uniform) == 0.5
    assert drawn == [(0, 1.0)]


def test_a_max_retry_after_of_zero_ignores_the_providers_wait() -> None:
    policy = RetryPolicy(jitter=False, max_retry_after=0)
    assert policy.delay(1, RateLimitError("429", retry_after=30)) == 0.5
    assert RetryPolicy(jitter=False).delay(1, RateLimitError("429", retry_after=90)) == 60


def test_a_policy_may_never_wait() -> None:
    policy = RetryPolicy(initial_delay=0, max_delay=0, max_retry_after=0)
    assert [policy.delay(n, RateLimitError("429", retry_after=5)) for n in (1, 2, 3)] == [0, 0, 0]


def test_a_policy_is_frozen() -> None:
    """Workers share policies (the orchestrator's default): one must not change another's."""
    policy = RetryPolicy()
    with pytest.raises(ValidationError):
        policy.max_attempts = 10  # type: ignore[misc]
