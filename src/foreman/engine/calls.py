"""One worker call with its failure policy: retries per model, then the fallback model.

Kept apart from task orchestration so the same policy serves workers, the quality gate
and synthesis alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from foreman.errors import ModelError, OutputValidationError
from foreman.models.base import Message, Model, ModelRequest, Usage
from foreman.models.retry import OnRetry, complete_with_retry
from foreman.workers.spec import Worker


@dataclass
class CallOutcome:
    """What a worker call produced (``output``) or why it failed (``error``)."""

    output: Any = None
    error: ModelError | None = None
    attempts: int = 0
    usage: Usage = field(default_factory=Usage)
    model: str | None = None


OnFallback = Callable[[str, ModelError], None]


async def call_worker(
    worker: Worker,
    models: list[Model],
    system: str,
    user: str,
    *,
    output_schema: type[BaseModel] | None = None,
    on_retry: OnRetry | None = None,
    on_fallback: OnFallback | None = None,
) -> CallOutcome:
    """Call ``models`` in turn (the worker's model, then its fallback model).

    Each model gets ``worker.retry.max_attempts`` attempts on transient errors; a
    non-transient error moves straight to the next model. ``output_schema`` turns the
    answer into a validated dict, and an answer that does not fit counts as transient.
    """
    outcome = CallOutcome()
    request = ModelRequest(
        system=system,
        messages=[Message(role="user", content=user)],
        output_schema=output_schema.model_json_schema() if output_schema else None,
        max_tokens=worker.max_tokens,
        temperature=worker.temperature,
    )
    for index, model in enumerate(models):
        if index and on_fallback and outcome.error is not None:
            on_fallback(model.name, outcome.error)
        tried = await complete_with_retry(
            model,
            request,
            worker.retry,
            call_timeout=worker.timeout,
            caller=f"worker {worker.name!r}",
            parse=lambda response: _parse(response.text, output_schema),
            on_retry=_offset(on_retry, outcome.attempts),
        )
        outcome.attempts += tried.attempts
        outcome.usage += tried.usage
        outcome.output, outcome.error, outcome.model = tried.value, tried.error, tried.model
        if tried.error is None:
            return outcome
    return outcome


def _offset(on_retry: OnRetry | None, earlier: int) -> OnRetry | None:
    """Number retries across models, so events count the task's attempts, not a model's."""
    if on_retry is None:
        return None
    return lambda attempt, error, delay: on_retry(earlier + attempt, error, delay)


def _parse(text: str, schema: type[BaseModel] | None) -> Any:
    if schema is None:
        return text
    try:
        return schema.model_validate_json(_strip_fences(text)).model_dump(mode="json")
    except (ValidationError, json.JSONDecodeError) as exc:
        raise OutputValidationError(
            f"The answer does not match {schema.__name__}: {str(exc)[:300]}. "
            f"Answer was: {text[:200]!r}"
        ) from exc


def _strip_fences(text: str) -> str:
    text = text.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    return text
