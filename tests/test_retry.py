"""The retry loop: a per-call timeout is a transient error that is retried, a cancellation
from outside (Ctrl-C, an aborted run) is not; exponential backoff with jitter, capped, and
the provider's Retry-After obeyed. Sleep and randomness are injected: nothing waits."""

from __future__ import annotations

import asyncio

import pytest

from fake_provider import FakeProvider, anthropic_error
from foreman.errors import ModelError, ModelTimeoutError, ProviderServerError, RateLimitError
from foreman.models.anthropic import AnthropicModel
from foreman.models.base import Message, ModelRequest
from foreman.models.defaults import DEFAULT_CALL_TIMEOUT
from foreman.models.openai import OpenAIModel
from foreman.models.retry import RetryPolicy, complete_with_retry
from foreman.models.sdk_errors import retry_after
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


# --- backoff: exponent, cap, jitter, Retry-After ----------------------------------------


def test_backoff_grows_by_the_multiplier_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_delay=1, multiplier=3, max_delay=20, jitter=False)

    assert [policy.delay(n) for n in range(1, 6)] == [1, 3, 9, 20, 20]


def test_jitter_draws_between_zero_and_the_capped_backoff() -> None:
    policy = RetryPolicy(initial_delay=1, multiplier=2, max_delay=5)
    drawn: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        drawn.append((low, high))
        return high / 2

    delays = [policy.delay(n, uniform=uniform) for n in (1, 2, 3, 4)]

    assert drawn == [(0, 1), (0, 2), (0, 4), (0, 5)]
    assert delays == [0.5, 1, 2, 2.5]


def test_a_providers_retry_after_is_obeyed_up_to_its_cap() -> None:
    policy = RetryPolicy(initial_delay=0.5, jitter=False, max_retry_after=60)

    assert policy.delay(1, RateLimitError("429", retry_after=5)) == 5
    assert policy.delay(1, RateLimitError("429", retry_after=3600)) == 60
    assert policy.delay(1, RateLimitError("429")) == 0.5
    # Never sooner than the backoff itself.
    assert policy.delay(1, RateLimitError("429", retry_after=0.1)) == 0.5


async def test_the_loop_sleeps_the_policys_delays_and_reports_them() -> None:
    model = ScriptedModel(
        [
            RateLimitError("429", retry_after=7),
            ProviderServerError("503"),
            ProviderServerError("503"),
            "done",
        ]
    )
    policy = RetryPolicy(max_attempts=4, initial_delay=1, multiplier=2, max_delay=3)
    slept: list[float] = []
    reported: list[tuple[int, str, float]] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    outcome = await complete_with_retry(
        model,
        REQUEST,
        policy,
        sleep=sleep,
        uniform=lambda low, high: high,  # the top of each jitter range
        on_retry=lambda attempt, error, delay: reported.append((attempt, str(error), delay)),
    )

    assert (outcome.output, outcome.attempts) == ("done", 4)
    assert slept == [7, 2, 3]  # Retry-After, then 1*2**1, then 1*2**2 capped at 3
    assert reported == [(1, "429", 7), (2, "503", 2), (3, "503", 3)]


async def test_no_sleep_after_the_last_attempt_or_a_permanent_error() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    failed = await complete_with_retry(
        ScriptedModel([ProviderServerError("1"), ProviderServerError("2")]),
        REQUEST,
        RetryPolicy(max_attempts=2, initial_delay=1, jitter=False),
        sleep=sleep,
    )
    refused = await complete_with_retry(
        ScriptedModel([ModelError("400")]), REQUEST, RETRY, sleep=sleep
    )

    assert (str(failed.error), failed.attempts, slept) == ("2", 2, [1])
    assert (str(refused.error), refused.attempts) == ("400", 1)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "5"}, 5.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"retry-after-ms": "1500", "retry-after": "5"}, 1.5),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 10.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:27:00 GMT"}, 0.0),  # already past
        ({"retry-after": "soon"}, None),
        ({"retry-after": "-3"}, None),
        ({}, None),
    ],
)
def test_retry_after_headers_are_read(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after(headers, now=lambda: 1445412470.0) == seconds  # 07:27:50 GMT


@pytest.mark.parametrize(
    ("status", "headers", "error", "seconds"),
    [
        (429, {"retry-after": "5"}, RateLimitError, 5.0),
        (429, {"retry-after-ms": "250"}, RateLimitError, 0.25),
        (503, {"retry-after": "3"}, ProviderServerError, 3.0),
        (429, {}, RateLimitError, None),
    ],
)
async def test_both_sdks_pass_retry_after_on(
    status: int, headers: dict[str, str], error: type, seconds: float | None
) -> None:
    with FakeProvider() as fake:
        models = [
            AnthropicModel("claude-test", api_key="k", base_url=fake.url),
            OpenAIModel("gpt-test", api_key="k", base_url=f"{fake.url}/v1"),
        ]
        for model in models:
            fake.reply(anthropic_error("slow down", "rate_limit_error"), status, headers)
            with pytest.raises(error) as caught:
                await model.complete(REQUEST)
            assert caught.value.retry_after == seconds
            await model.aclose()


# --- every call has a timeout ------------------------------------------------------------


async def test_a_call_without_a_timeout_gets_the_models_default() -> None:
    model = ScriptedModel(["late", "late", "late"], latency=5)
    model.default_call_timeout = 0.01

    outcome = await complete_with_retry(model, REQUEST, RETRY, caller="the planner")

    assert isinstance(outcome.error, ModelTimeoutError)
    assert "no answer within 0.01s (the planner)" in str(outcome.error)
    assert outcome.attempts == 3


def test_sdk_clients_have_a_finite_timeout() -> None:
    for model in (
        AnthropicModel("claude-test", api_key="k"),
        OpenAIModel("gpt-test", api_key="k"),
    ):
        assert model._client.timeout == DEFAULT_CALL_TIMEOUT == model.default_call_timeout


@pytest.mark.parametrize("given", [0.2, None])
async def test_a_provider_that_never_answers_times_out_and_is_retried(
    given: float | None,
) -> None:
    with FakeProvider() as fake:
        for model in (
            AnthropicModel("claude-test", api_key="k", base_url=fake.url),
            OpenAIModel("gpt-test", api_key="k", base_url=f"{fake.url}/v1"),
        ):
            model.default_call_timeout = 0.2
            fake.hang()
            fake.hang()
            calls_before = len(fake.requests)

            outcome = await asyncio.wait_for(
                complete_with_retry(
                    model, REQUEST, RetryPolicy(max_attempts=2, initial_delay=0), call_timeout=given
                ),
                timeout=30,
            )

            assert isinstance(outcome.error, ModelTimeoutError), outcome.error
            assert outcome.attempts == 2
            # Two attempts at most reached the server (the SDK retries nothing behind our
            # back); under heavy load the second may time out before it is even sent.
            assert 1 <= len(fake.requests) - calls_before <= 2
            await model.aclose()


async def test_a_worker_without_a_timeout_gets_its_models_default() -> None:
    from foreman.engine.calls import call_worker
    from foreman.workers import Worker

    model = ScriptedModel(["late", "late"], latency=5)
    model.default_call_timeout = 0.01
    worker = Worker(
        name="w",
        description="d",
        system_prompt="s",
        retry=RetryPolicy(max_attempts=2, initial_delay=0),
    )

    outcome = await call_worker(worker, [model], "s", "u")

    assert worker.timeout is None
    assert isinstance(outcome.error, ModelTimeoutError) and outcome.attempts == 2
