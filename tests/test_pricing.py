"""Prices come from genai-prices by exact model id, with cache and long-context rates;
user overrides win; a model without a price is named, never guessed."""

from __future__ import annotations

import pytest

from foreman.errors import ConfigError
from foreman.models.base import Usage
from foreman.models.pricing import Cost, cost, first_price, price_run, priced, run_price

M = 1_000_000


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FOREMAN_PRICES", raising=False)


def test_exact_model_ids_get_their_own_price_not_a_familys() -> None:
    # A prefix table priced gpt-5.4-mini as gpt-5 ($1.25/$10) and claude-opus-4-8 at $15/$75.
    assert cost("openai:gpt-5.4-mini", Usage(input_tokens=M, output_tokens=M)) == 5.25
    assert cost("openai:gpt-5.4-mini-2026-03-17", Usage(input_tokens=M)) == 0.75
    assert cost("anthropic:claude-opus-4-8", Usage(input_tokens=M, output_tokens=M)) == 30.0


def test_a_provider_reported_id_without_prefix_is_priced() -> None:
    assert cost("gpt-5.4-mini-2026-03-17", Usage(output_tokens=M)) == 4.5


def test_cache_reads_and_writes_are_priced_at_their_own_rates() -> None:
    usage = Usage(input_tokens=M, cache_read_tokens=M, cache_write_tokens=M)

    assert cost("anthropic:claude-sonnet-5-5", usage) == pytest.approx(2 + 0.1 + 2.5)


def test_long_context_tiers_apply() -> None:
    short = cost("anthropic:claude-sonnet-4-5", Usage(input_tokens=100_000))
    long = cost("anthropic:claude-sonnet-4-5", Usage(input_tokens=300_000))

    assert (short, long) == (pytest.approx(0.3), pytest.approx(1.8))  # $3, then $6 per M


def test_local_models_cost_nothing_and_unknown_ones_have_no_price() -> None:
    assert cost("local", Usage(input_tokens=M)) == 0.0
    assert cost("local:/models/x.gguf", Usage(input_tokens=M)) == 0.0
    assert cost("openai:mystery-7b", Usage(input_tokens=M)) is None
    assert cost(None, Usage(input_tokens=M)) is None


def test_price_run_names_every_model_without_a_price() -> None:
    spent = Usage(input_tokens=M)

    priced = price_run({"openai:gpt-5.4-mini": spent, "local": spent})
    unpriced = price_run(
        {"openai:gpt-5.4-mini": spent, "openai:mystery": spent, "idle:model": Usage()}
    )

    assert priced == Cost(cost_usd=0.75, unpriced=[])
    assert unpriced == Cost(cost_usd=None, unpriced=["openai:mystery"])


def test_run_price_splits_tasks_from_the_rest_and_names_the_unpriced() -> None:
    tasks = [("openai:gpt-5.4-mini", Usage(input_tokens=M)), ("mystery", Usage(output_tokens=5))]
    total = Usage(input_tokens=2 * M, output_tokens=5, cache_read_tokens=M)

    # The task's million input, then the rest: a million input, 5 output, a million cached.
    rest = 0.75 + 5 * 4.5 / M + 0.075
    assert run_price("openai:gpt-5.4-mini", total, tasks[:1]) == Cost(pytest.approx(0.75 + rest))
    assert run_price("openai:gpt-5.4-mini", total, tasks) == Cost(None, ["mystery"])
    assert run_price(None, total, tasks[:1]) == Cost(None, ["(no model)"])
    assert run_price("openai:gpt-5.4-mini", total, tasks[:1]).cost_usd == pytest.approx(0.75 + rest)


def test_overrides_add_and_replace_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "FOREMAN_PRICES",
        '{"mystery-7b": [1, 2], "openai:gpt-5.4-mini": [10, 20, 1, 5]}',
    )

    assert cost("openai:mystery-7b", Usage(input_tokens=M, output_tokens=M)) == 3.0
    # Without cache rates, cached tokens cost the input rate.
    assert cost("mystery-7b", Usage(cache_read_tokens=M, cache_write_tokens=M)) == 2.0
    usage = Usage(input_tokens=M, output_tokens=M, cache_read_tokens=M, cache_write_tokens=M)
    assert cost("openai:gpt-5.4-mini", usage) == 36.0


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"m": 1}', "'m' needs [input, output]"),
        ('{"m": [1]}', "'m' needs [input, output]"),
        ('{"m": [1, "2"]}', "'m' needs [input, output]"),
        ('{"m": [1, -2]}', "'m' needs [input, output]"),
        ('{"m": [Infinity, 1]}', "'m' needs [input, output]"),
        ('{"m": [1, 1e309]}', "'m' needs [input, output]"),  # read as inf
    ],
)
def test_a_malformed_override_is_one_clear_config_error(
    monkeypatch: pytest.MonkeyPatch, raw: str, problem: str
) -> None:
    monkeypatch.setenv("FOREMAN_PRICES", raw)

    with pytest.raises(ConfigError) as caught:
        cost("openai:gpt-5.4-mini", Usage(input_tokens=1))

    message = str(caught.value)
    assert message.startswith(f"FOREMAN_PRICES is invalid: {problem}")
    assert "\n" not in message


def test_an_unpriced_model_is_named_once_by_its_fuller_name() -> None:
    spent = Usage(input_tokens=10, output_tokens=5)
    tasks = [("llama3.2", spent), ("llama3.2", spent)]
    price = run_price("openai:llama3.2", Usage(input_tokens=60, output_tokens=20), tasks)
    assert price.cost_usd is None and price.unpriced == ["openai:llama3.2"]
    both = run_price("openai:llama3.2", Usage(input_tokens=30), [("other-model", spent)])
    assert both.unpriced == ["other-model", "openai:llama3.2"]


def test_priced_says_whether_a_model_has_a_price(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a cost budget and a plan budget ask of each model they count."""
    assert priced("openai:gpt-5.4-mini")
    assert priced("local")  # free, and known to be
    assert not priced("openai:made-up-model")
    monkeypatch.setenv("FOREMAN_PRICES", '{"openai:made-up-model": [1, 2]}')
    assert priced("openai:made-up-model")


def test_first_price_prefers_an_override_of_either_name_and_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ledger's pricer is worked out once per names: it must still see FOREMAN_PRICES
    change, put a user's price for the model asked before a listed one for the model that
    answered, and cost what ``cost`` does when nothing is overridden."""
    names = ("openai:gpt-5.4-mini-2026-03-17", "openai:my-gpt")
    usage = Usage(input_tokens=M, output_tokens=M)
    assert first_price(names, usage) == cost(names[0], usage) == 5.25
    monkeypatch.setenv("FOREMAN_PRICES", '{"my-gpt": [1, 2]}')
    assert first_price(names, usage) == 3.0  # the asked model's own price wins
    monkeypatch.setenv("FOREMAN_PRICES", '{"my-gpt": [1, 3]}')
    assert first_price(names, usage) == 4.0
    monkeypatch.setenv("FOREMAN_PRICES", "{not json")
    with pytest.raises(ConfigError):
        first_price(names, usage)
    monkeypatch.delenv("FOREMAN_PRICES")
    assert first_price(("scripted",), usage) is None
    assert first_price(("scripted", "local"), usage) == 0.0
