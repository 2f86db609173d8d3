"""What model calls cost, estimated from token counts and the ``genai-prices`` database.

``genai-prices`` (the maintained, offline price data pydantic-ai uses) knows exact model
ids, dated aliases, cache-read and cache-write rates and long-context tiers. Tiers apply to
the tokens priced together, which is one task's calls (the store keeps no finer record).

``FOREMAN_PRICES`` overrides or adds prices: a JSON object mapping a model id (or a full
``provider:id`` name) to ``[input, output]`` US dollars per million tokens, optionally
followed by cache-read and cache-write rates (cache tokens cost the input rate otherwise).
Local models cost nothing. A model with no known price has no estimate, never a guess:
``price_run`` says which models lack one.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache, partial
from typing import Any

from foreman.errors import ConfigError
from foreman.models.base import Usage

_PROVIDERS = ("anthropic", "openai")
_OVERRIDE_EXAMPLE = '{"my-model": [0.5, 1.5]}'


@dataclass(frozen=True)
class Cost:
    """A price estimate: ``cost_usd`` is None when any model in ``unpriced`` has no price."""

    cost_usd: float | None
    unpriced: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Override:
    input: float
    output: float
    cache_read: float
    cache_write: float

    def price(self, usage: Usage) -> float:
        dollars = (
            usage.input_tokens * self.input
            + usage.output_tokens * self.output
            + usage.cache_read_tokens * self.cache_read
            + usage.cache_write_tokens * self.cache_write
        )
        return dollars / 1_000_000


@cache
def _overrides(raw: str | None) -> dict[str, _Override]:
    """``FOREMAN_PRICES`` parsed; any mistake is one ConfigError line naming the fix."""
    if not raw:
        return {}
    try:
        table = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _bad_prices(f"not JSON ({exc.msg})") from None
    if not isinstance(table, dict):
        raise _bad_prices("not a JSON object")
    overrides = {}
    for model, rates in table.items():
        if (
            not isinstance(rates, list)
            or len(rates) not in (2, 3, 4)
            or not all(_is_rate(rate) for rate in rates)
        ):
            raise _bad_prices(f"{model!r} needs [input, output] non-negative numbers")
        read, write = [*rates[2:], rates[0], rates[0]][:2]
        overrides[model] = _Override(rates[0], rates[1], read, write)
    return overrides


def _is_rate(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _bad_prices(problem: str) -> ConfigError:
    return ConfigError(
        f"FOREMAN_PRICES is invalid: {problem}. Give a JSON object of model id to [input, "
        f"output] dollars per million tokens, e.g. {_OVERRIDE_EXAMPLE}."
    )


def _split(model: str) -> tuple[str | None, str]:
    """``"openai:gpt-5"`` -> ``("openai", "gpt-5")``; a bare provider id has no provider."""
    provider, sep, model_id = model.partition(":")
    return (provider, model_id) if sep and provider in _PROVIDERS else (None, model)


def cost(model: str | None, usage: Usage) -> float | None:
    """Estimated dollars for ``usage`` on ``model`` (a foreman name or a provider id).

    None when the model has no known price. Raises ``ConfigError`` for a malformed
    ``FOREMAN_PRICES``.
    """
    if model is None:
        return None
    if model == "local" or model.startswith("local:"):
        return 0.0
    provider, model_id = _split(model)
    overrides = _overrides(own_prices())
    for key in (model, model_id):
        if key in overrides:
            return overrides[key].price(usage)
    return _listed_price(provider, model_id, usage)


#: The usage "has a price" is asked with: a little of each kind a call always spends.
_PROBE = Usage(input_tokens=1_000, output_tokens=1_000)


def priced(model: str) -> bool:
    """Whether ``model`` has a known price (``FOREMAN_PRICES`` included): what a cost budget
    and a plan budget need of every model they count."""
    return cost(model, _PROBE) is not None


def check_prices() -> None:
    """Raise ``ConfigError`` now for a malformed ``FOREMAN_PRICES``, before any call is
    made: found when the first answer is priced, it would lose a call already paid for."""
    _overrides(own_prices())


Pricer = Callable[[Usage], float | None]

#: (``FOREMAN_PRICES``, names) -> the genai-prices data the pricer was worked out from
#: (None: it uses none), and the pricer.
_pricers: dict[tuple[str | None, tuple[str, ...]], tuple[object, Pricer]] = {}


#: ``first_price``'s ``prices`` when not given: ``FOREMAN_PRICES`` as it is now.
FROM_ENVIRONMENT: Any = object()


def own_prices() -> str | None:
    """``FOREMAN_PRICES`` as it is now (a ledger reads it once, as its run starts)."""
    return os.environ.get("FOREMAN_PRICES")


def first_price(
    names: tuple[str, ...], usage: Usage, prices: str | None = FROM_ENVIRONMENT
) -> float | None:
    """``usage`` at the first of ``names`` with a price of the user's own
    (``prices``: ``FOREMAN_PRICES`` read now unless given), else at the first with a
    known price; None when none has one.

    Worked out once per names, ``FOREMAN_PRICES`` value and genai-prices data: the ledger
    prices every call it records, and finding the price (overrides, aliases, tiers) costs
    more than applying it. The ledger passes the value it read as its run started: an
    unset variable costs a raised and caught ``KeyError`` on each read."""
    raw = own_prices() if prices is FROM_ENVIRONMENT else prices
    known = _pricers.get((raw, names))
    if known is None or (known[0] is not None and known[0] is not _snapshot_getter()()):
        if len(_pricers) >= 1024:  # names the environment keeps changing: start again
            _pricers.clear()
        known = _pricers[(raw, names)] = _pricer(names, _overrides(raw))
    return known[1](usage)


def _pricer(names: tuple[str, ...], overrides: dict[str, _Override]) -> tuple[object, Pricer]:
    """What ``first_price`` applies to ``names``, as ``cost`` would find it."""
    for name in names:
        if name in overrides or _split(name)[1] in overrides:
            return None, _priced_at(name, overrides)
    snapshot = None
    for name in names:
        if name == "local" or name.startswith("local:"):
            return snapshot, _free
        provider, model_id = _split(name)
        snapshot = _snapshot_getter()()
        rates = _token_rates(provider, model_id)
        if rates is None:  # genai-prices' own calculation, every time
            return snapshot, partial(_first_cost, names)
        if rates is not _UNLISTED:
            return snapshot, rates.price
    return snapshot, _unpriced


def _priced_at(name: str, overrides: dict[str, _Override]) -> Pricer:
    if name == "local" or name.startswith("local:"):
        return _free
    return overrides[name if name in overrides else _split(name)[1]].price


def _free(usage: Usage) -> float:
    return 0.0


def _unpriced(usage: Usage) -> None:
    return None


def _first_cost(names: tuple[str, ...], usage: Usage) -> float | None:
    for name in names:
        priced = cost(name, usage)
        if priced is not None:
            return priced
    return None


def _listed_price(provider: str | None, model_id: str, usage: Usage) -> float | None:
    rates = _token_rates(provider, model_id)
    if rates is _UNLISTED:
        return None
    if rates is not None:
        return rates.price(usage)
    return _calc_price(provider, model_id, usage)


def _calc_price(provider: str | None, model_id: str, usage: Usage) -> float | None:
    """genai-prices' own calculation: dated prices and every unit it knows."""
    from genai_prices import Usage as PricedUsage
    from genai_prices import calc_price

    # genai-prices counts cache tokens as part of input; foreman keeps them apart.
    priced = PricedUsage(
        input_tokens=usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
    )
    try:
        return float(calc_price(priced, model_id, provider_id=provider).total_price)
    except LookupError:
        return None


#: A rate in dollars per million tokens: the base, and (start, rate) long-context tiers
#: that apply once the call's input tokens (cache included) exceed ``start``.
_Rate = tuple[float, tuple[tuple[int, float], ...]]


@dataclass(frozen=True)
class _TokenRates:
    """A listed price as one rate per token kind foreman counts."""

    input: _Rate
    output: _Rate
    cache_read: _Rate
    cache_write: _Rate

    def price(self, usage: Usage) -> float:
        prompt = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
        dollars = (
            usage.input_tokens * _at(self.input, prompt)
            + usage.output_tokens * _at(self.output, prompt)
            + usage.cache_read_tokens * _at(self.cache_read, prompt)
            + usage.cache_write_tokens * _at(self.cache_write, prompt)
        )
        return dollars / 1_000_000


def _at(rate: _Rate, prompt_tokens: int) -> float:
    base, tiers = rate
    for start, tiered in reversed(tiers):
        if prompt_tokens > start:
            return tiered
    return base


#: What ``_token_rates`` returns for a model genai-prices does not list.
_UNLISTED = _TokenRates((0.0, ()), (0.0, ()), (0.0, ()), (0.0, ()))

_TOKEN_KEYS = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")
#: Units foreman never reports (1-hour cache writes, searches): they cost nothing here.
_UNREPORTED_KEYS = frozenset(
    {"cache_write_1h_mtok", "web_searches_kcount", "storage_searches_kcount"}
)

#: (provider, model id) -> the genai-prices data it was read from, and the model's rates.
_rate_cache: dict[tuple[str | None, str], tuple[object, _TokenRates | None]] = {}


def _token_rates(provider: str | None, model_id: str) -> _TokenRates | None:
    """The model's listed price as per-token rates, looked up once per model.

    genai-prices' ``calc_price`` takes 0.1-0.3 ms a call (it finds the model, resolves its
    units and validates the usage every time), and a run prices every call it records.
    For a price made of token rates (with long-context tiers or not) the same sum is done
    here directly. ``_UNLISTED`` for a model with no listed price; None when only
    genai-prices' own calculation is right (prices that change on a date, other units).
    A new genai-prices snapshot (an update of its data) is looked up anew.
    """
    snapshot = _snapshot_getter()()
    known = _rate_cache.get((provider, model_id))
    if known is not None and known[0] is snapshot:
        return known[1]
    rates: _TokenRates | None
    try:
        _, model = snapshot.find_provider_model(model_id, None, provider, None)
    except LookupError:
        rates = _UNLISTED
    else:
        rates = _as_token_rates(model.prices)
    _rate_cache[(provider, model_id)] = (snapshot, rates)
    return rates


@cache
def _snapshot_getter() -> Callable[[], object]:
    """genai-prices' current data, imported on first use (it is large)."""
    from genai_prices.data_snapshot import get_snapshot

    return get_snapshot


def _as_token_rates(prices: object) -> _TokenRates | None:
    from genai_prices.types import ModelPrice, TieredPrices

    if not isinstance(prices, ModelPrice):
        return None  # a list of prices that change on a date
    listed = {key: value for key, value in vars(prices).items() if value is not None}
    if not set(listed) <= {*_TOKEN_KEYS, *_UNREPORTED_KEYS}:
        return None

    def rate(value: object) -> _Rate | None:
        if value is None:
            return (0.0, ())
        if isinstance(value, Decimal):
            return (float(value), ())
        if isinstance(value, TieredPrices):
            return (float(value.base), tuple((t.start, float(t.price)) for t in value.tiers))
        return None

    rates = [rate(listed.get(key)) for key in _TOKEN_KEYS]
    if None in rates:
        return None
    given_input, output, read, write = rates
    # Cache tokens without a rate of their own cost the input rate.
    return _TokenRates(
        given_input,
        output,
        read if "cache_read_mtok" in listed else given_input,
        write if "cache_write_mtok" in listed else given_input,
    )  # type: ignore[arg-type]


def price_run(usage_by_model: Mapping[str, Usage]) -> Cost:
    """The cost of tokens spent on several models, naming those without a known price."""
    dollars, unpriced = 0.0, []
    for model, usage in usage_by_model.items():
        if not usage.total_tokens:
            continue
        price = cost(model, usage)
        if price is None:
            unpriced.append(model)
        else:
            dollars += price
    return Cost(None if unpriced else dollars, unpriced)


def run_price(
    default_model: str | None, total: Usage, tasks: Iterable[tuple[str | None, Usage]]
) -> Cost:
    """A run's cost: each task at the model that answered it, the rest of the run's tokens
    (planning, synthesis) at the run's default model."""
    dollars, unpriced, task_tokens = 0.0, dict[str, str](), Usage()
    for model, usage in [*tasks, (default_model, None)]:
        if usage is None:  # the rest: whatever the tasks did not spend
            usage = _minus(total, task_tokens)
        else:
            task_tokens += usage
        if not usage.total_tokens:
            continue
        price = cost(model, usage)
        if price is None:
            _name_once(unpriced, model or "(no model)")
        else:
            dollars += price
    return Cost(None if unpriced else dollars, list(unpriced.values()))


def _name_once(unpriced: dict[str, str], model: str) -> None:
    """One entry per model: a task's answering id (``gpt-x``) and the run's name for it
    (``openai:gpt-x``) are the same model; the fuller name is kept."""
    model_id = _split(model)[1]
    if ":" in model or model_id not in unpriced:
        unpriced[model_id] = model


def _minus(total: Usage, spent: Usage) -> Usage:
    return Usage(
        input_tokens=max(0, total.input_tokens - spent.input_tokens),
        output_tokens=max(0, total.output_tokens - spent.output_tokens),
        cache_read_tokens=max(0, total.cache_read_tokens - spent.cache_read_tokens),
        cache_write_tokens=max(0, total.cache_write_tokens - spent.cache_write_tokens),
    )
