"""What model calls cost, estimated from token counts and list prices.

Prices are US dollars per million tokens (input, output), matched by the longest model-id
prefix, so dated ids (``gpt-4o-mini-2024-07-18``) find their family. Providers change
prices: ``FOREMAN_PRICES`` (a JSON object of the same shape) adds or overrides entries.
Local models cost nothing; an unknown model has no estimate (``None``), never a guess.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from functools import cache

from foreman.models.base import Usage

LIST_PRICES: dict[str, tuple[float, float]] = {
    "claude-opus-4": (15.0, 75.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-haiku-4": (1.0, 5.0),
    "claude-3-7-sonnet": (3.0, 15.0),
    "claude-3-5-haiku": (0.8, 4.0),
    "gpt-5-nano": (0.05, 0.4),
    "gpt-5-mini": (0.25, 2.0),
    "gpt-5": (1.25, 10.0),
    "gpt-4.1-nano": (0.1, 0.4),
    "gpt-4.1-mini": (0.4, 1.6),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4o-mini": (0.15, 0.6),
    "gpt-4o": (2.5, 10.0),
    "o4-mini": (1.1, 4.4),
    "o3": (2.0, 8.0),
}


@cache
def _prices() -> dict[str, tuple[float, float]]:
    prices = dict(LIST_PRICES)
    if extra := os.environ.get("FOREMAN_PRICES"):
        prices.update({k: (float(v[0]), float(v[1])) for k, v in json.loads(extra).items()})
    return prices


def cost(model: str | None, usage: Usage) -> float | None:
    """Estimated dollars for ``usage`` on ``model`` (a foreman name or a provider id)."""
    if model is None:
        return None
    if model == "local" or model.startswith("local:"):
        return 0.0
    model_id = (
        model.split(":", 1)[1] if model.split(":", 1)[0] in ("anthropic", "openai") else model
    )
    matches = [prefix for prefix in _prices() if model_id.startswith(prefix)]
    if not matches:
        return None
    per_input, per_output = _prices()[max(matches, key=len)]
    return (usage.input_tokens * per_input + usage.output_tokens * per_output) / 1_000_000


def run_cost(
    default_model: str | None, total: Usage, tasks: Iterable[tuple[str | None, Usage]]
) -> float | None:
    """A run's cost: each task at the model that answered it, the rest of the run's tokens
    (planning, synthesis) at the run's default model. None if any part has no price."""
    dollars, task_tokens = 0.0, Usage()
    for model, usage in tasks:
        if not usage.total_tokens:
            continue
        task_tokens += usage
        price = cost(model, usage)
        if price is None:
            return None
        dollars += price
    rest = Usage(
        input_tokens=max(0, total.input_tokens - task_tokens.input_tokens),
        output_tokens=max(0, total.output_tokens - task_tokens.output_tokens),
    )
    if rest.total_tokens:
        price = cost(default_model, rest)
        if price is None:
            return None
        dollars += price
    return dollars
