"""One worker call with its failure policy: retries per model, then the fallback model.

Kept apart from task orchestration so the same policy serves workers, the quality gate
and synthesis alike.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Coroutine
from typing import Any

from pydantic import BaseModel, ValidationError

from foreman.errors import ModelError, OutputValidationError
from foreman.events import CallPurpose, CallRetried
from foreman.models.base import Message, Model, ModelRequest, ModelResponse, Usage
from foreman.models.retry import (
    CallLog,
    CallOutcome,
    OnRetry,
    complete_with_retry,
    numbered_after,
)
from foreman.workers.spec import Worker

OnFallback = Callable[[str, ModelError], None]


def call_worker(
    worker: Worker,
    models: list[Model],
    system: str,
    user: str,
    *,
    output_schema: type[BaseModel] | None = None,
    call_timeout: float | None = None,
    on_retry: OnRetry | None = None,
    on_fallback: OnFallback | None = None,
    scope: CallLog | None = None,
) -> Coroutine[Any, Any, CallOutcome]:
    """Call ``models`` in turn (the worker's model, then its fallback model).

    Each model gets ``worker.retry.max_attempts`` attempts on transient errors (a call
    that outlasts its timeout is one); a non-transient error moves straight to the next
    model. ``call_timeout`` (see ``timeout_for``) defaults to the worker's. ``output_schema``
    turns the answer into a validated dict, and an answer that does not fit counts as
    transient. ``scope`` records every attempt in the run's call ledger.

    A plain function returning ``call_request``'s coroutine: one coroutine less on every
    task's way to its model (in a wide fan-out each task's start delays all after it).
    """
    request = ModelRequest(
        system=system,
        messages=[Message(role="user", content=user)],
        output_schema=schema_of(output_schema) if output_schema else None,
        max_tokens=worker.max_tokens,
        temperature=worker.temperature,
    )
    return call_request(
        worker,
        models,
        request,
        parse=answer_parser(output_schema),
        call_timeout=call_timeout,
        on_retry=on_retry,
        on_fallback=on_fallback,
        scope=scope,
    )


def call_request(
    worker: Worker,
    models: list[Model],
    request: ModelRequest,
    *,
    parse: Callable[[ModelResponse], Any],
    call_timeout: float | None = None,
    on_retry: OnRetry | None = None,
    on_fallback: OnFallback | None = None,
    scope: CallLog | None = None,
) -> Coroutine[Any, Any, CallOutcome]:
    """``call_worker``'s policy for a request built by the caller (a turn of a tool
    loop): ``parse`` turns the answer into the outcome's ``output``. With one model (no
    fallback model), its retry loop's own coroutine: nothing to add around it."""
    timeout = call_timeout if call_timeout is not None else worker.timeout
    caller = f"worker {worker.name!r}"
    if len(models) == 1:
        return complete_with_retry(
            models[0], request, worker.retry, call_timeout=timeout, caller=caller,
            parse=parse, on_retry=on_retry, scope=scope,
        )  # fmt: skip
    return _in_turn(worker, models, request, parse, timeout, caller, on_retry, on_fallback, scope)


async def _in_turn(
    worker: Worker,
    models: list[Model],
    request: ModelRequest,
    parse: Callable[[ModelResponse], Any],
    call_timeout: float | None,
    caller: str,
    on_retry: OnRetry | None,
    on_fallback: OnFallback | None,
    scope: CallLog | None,
) -> CallOutcome:
    """Each model's retry loop in turn, until one answers."""
    attempts, spent = 0, []
    error: ModelError | None = None
    for model in models:
        if error is not None and on_fallback:  # a model before this one gave up
            on_fallback(model.name, error)
        tried = await complete_with_retry(
            model, request, worker.retry, call_timeout=call_timeout, caller=caller, parse=parse,
            on_retry=numbered_after(on_retry, attempts), scope=scope,
        )  # fmt: skip
        attempts += tried.attempts
        spent.append(tried.usage)
        if tried.error is None:
            output, usage = tried.output, _total(spent)
            return CallOutcome(output=output, attempts=attempts, usage=usage, model=tried.model)
        error = tried.error
    return CallOutcome(error=error, attempts=attempts, usage=_total(spent))


def retried(
    emit: Callable[[Any], None], run_id: str, purpose: CallPurpose, task_id: str | None = None
) -> OnRetry:
    """An ``on_retry`` callback that reports each retry of the engine's own calls."""
    return lambda attempt, error, delay: emit(
        CallRetried(
            run_id=run_id,
            purpose=purpose,
            task_id=task_id,
            attempt=attempt,
            error=str(error),
            delay=delay,
        )
    )


def timeout_for(worker: Worker, default: float | None) -> float | None:
    """Seconds per call of ``worker``: its own timeout when it set one, else ``default``
    (the orchestrator's); ``None`` leaves it to the model's own default."""
    return worker.timeout if worker.timeout is not None else default


@functools.cache
def schema_of(schema: type[BaseModel]) -> dict[str, Any]:
    """A worker's JSON schema, built once per class: pydantic rebuilds it on every call
    (hundreds of microseconds for a nested model), and the request copies it anyway."""
    return schema.model_json_schema()


def _total(spent: list[Usage]) -> Usage:
    """Tokens of every model tried; one model's record is fresh, so it is passed on as is."""
    return spent[0] if len(spent) == 1 else sum(spent, Usage())


def answer_parser(schema: type[BaseModel] | None) -> Callable[[ModelResponse], Any]:
    """The answer's text, or for a structured worker the validated dict.

    Free text, the common case, shares one function instead of a closure per call.
    """
    if schema is None:
        return _text
    return lambda response: _parse(response.text, schema)


def _text(response: ModelResponse) -> str:
    return response.text


def _parse(text: str, schema: type[BaseModel]) -> Any:
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
