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
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache

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
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


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
    overrides = _overrides(os.environ.get("FOREMAN_PRICES"))
    for key in (model, model_id):
        if key in overrides:
            return overrides[key].price(usage)
    return _listed_price(provider, model_id, usage)


def overridden(model: str) -> bool:
    """Whether ``FOREMAN_PRICES`` prices ``model`` (a foreman name or a provider id)."""
    overrides = _overrides(os.environ.get("FOREMAN_PRICES"))
    return bool(overrides) and (model in overrides or _split(model)[1] in overrides)


def _listed_price(provider: str | None, model_id: str, usage: Usage) -> float | None:
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
