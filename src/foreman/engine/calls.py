"""One worker call with its failure policy: timeout, retry with backoff, fallback model.

Kept apart from task orchestration so the same policy serves workers, the quality gate
and synthesis alike.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from foreman.errors import (
    ModelError,
    ModelTimeoutError,
    OutputValidationError,
    TransientModelError,
)
from foreman.models.base import Message, Model, ModelRequest, Usage
from foreman.workers.spec import Worker


@dataclass
class CallOutcome:
    """What a worker call produced (``output``) or why it failed (``error``)."""

    output: Any = None
    error: ModelError | None = None
    attempts: int = 0
    usage: Usage = field(default_factory=Usage)
    model: str | None = None


OnRetry = Callable[[int, ModelError, float], None]
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
        for attempt in range(1, worker.retry.max_attempts + 1):
            outcome.attempts += 1
            try:
                async with asyncio.timeout(worker.timeout):
                    response = await model.complete(request)
                outcome.usage += response.usage
                outcome.output = _parse(response.text, output_schema)
                outcome.model, outcome.error = response.model, None
                return outcome
            except TimeoutError:
                outcome.error = ModelTimeoutError(
                    f"{model.name} gave no answer within {worker.timeout:g}s "
                    f"(worker {worker.name!r}); raise the worker's timeout if this is expected."
                )
            except ModelError as exc:
                outcome.error = exc
                if not isinstance(exc, TransientModelError):
                    break
            if attempt < worker.retry.max_attempts:
                delay = worker.retry.delay(attempt)
                if on_retry:
                    on_retry(outcome.attempts, outcome.error, delay)
                await asyncio.sleep(delay)
    return outcome


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
