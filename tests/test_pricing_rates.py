"""Prices looked up once per model must equal genai-prices' own calculation, call by call."""

from __future__ import annotations

import random

import pytest
from genai_prices.data_snapshot import get_snapshot

from foreman.models import pricing
from foreman.models.base import Usage

MODELS = [
    (provider.id, model.id)
    for provider in get_snapshot().providers
    if provider.id in ("openai", "anthropic")
    for model in provider.models
]


def usages(seed: str) -> list[Usage]:
    """Small and long-context calls, with and without cache tokens (tiers start at 128k-272k)."""
    rng = random.Random(seed)
    return [
        Usage(
            input_tokens=rng.choice([0, 1, rng.randint(0, 5_000), rng.randint(100_000, 400_000)]),
            output_tokens=rng.choice([0, rng.randint(0, 9_000)]),
            cache_read_tokens=rng.choice([0, rng.randint(0, 250_000)]),
            cache_write_tokens=rng.choice([0, rng.randint(0, 50_000)]),
        )
        for _ in range(12)
    ]


@pytest.mark.parametrize(("provider", "model_id"), MODELS)
def test_each_listed_model_prices_as_genai_prices_does(provider: str, model_id: str) -> None:
    for usage in usages(f"{provider}:{model_id}"):
        expected = pricing._calc_price(provider, model_id, usage)
        got = pricing._listed_price(provider, model_id, usage)
        if expected is None:  # an id genai-prices does not match by itself (ft:...)
            assert got is None
        else:
            assert got == pytest.approx(expected, rel=1e-9, abs=1e-12), usage


def test_most_models_take_the_fast_path_and_unknown_ones_have_no_price() -> None:
    rates = [pricing._token_rates(provider, model_id) for provider, model_id in MODELS]
    fast = [r for r in rates if r is not None and r is not pricing._UNLISTED]
    assert len(fast) > len(MODELS) // 2  # the comparison above is not vacuous
    assert any(rate[1] for r in fast for rate in (r.input, r.output))  # tiers are covered
    assert pricing._token_rates(None, "no-such-model-xyz") is pricing._UNLISTED
    assert pricing.cost("no-such-model-xyz", Usage(input_tokens=10)) is None


def test_a_long_context_call_costs_its_tier() -> None:
    model = "anthropic:claude-sonnet-4-5"
    short, long = Usage(input_tokens=100_000), Usage(input_tokens=300_000)
    short_cost, long_cost = pricing.cost(model, short), pricing.cost(model, long)
    assert short_cost is not None and long_cost is not None
    assert long_cost > 3 * short_cost  # the tier's higher rate, not just 3x the tokens
