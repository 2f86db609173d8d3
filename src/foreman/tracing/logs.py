"""Python ``logging`` for runs: one INFO line per event and per model call, prompts at DEBUG.

Everything goes under the ``foreman`` logger (``foreman.events`` for events,
``foreman.calls`` for the call ledger), which has a ``NullHandler`` and nothing else: a
library stays silent until its user configures logging (``foreman -v`` does it for the CLI).

Each line is ``what key=value ...`` (logfmt): a value with anything but plain characters is
JSON-quoted, so a model's output can never spread over lines, forge a field, or carry
terminal escapes. The run id, task id, worker and event type also ride on each record as
attributes (``record.run_id``...) for formatters and structured log shippers.

Checking ``isEnabledFor`` first keeps an orchestrator whose logs nobody reads from paying
for the formatting: the ``LoggingObserver`` is installed on every orchestrator by default.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

from foreman.ledger.records import CallRecord

logger = logging.getLogger("foreman")
logger.addHandler(logging.NullHandler())

EVENTS = logging.getLogger("foreman.events")
CALLS = logging.getLogger("foreman.calls")

#: Fields of each event type shown after its run, task and worker, in this order.
_FIELDS: dict[str, tuple[str, ...]] = {
    "run_started": ("resumed", "request"),
    "plan_rejected": ("attempt", "errors"),
    "task_retried": ("attempt", "delay", "error"),
    "call_retried": ("purpose", "attempt", "delay", "error"),
    "task_fallback": ("kind", "to", "error"),
    "task_validated": ("revision", "approved", "reasons"),
    "approval_requested": ("risk", "may_have_run"),
    "approval_decided": ("approved", "note"),
    "task_finished": ("attempts", "latency"),
    "task_failed": ("policy", "error"),
    "task_skipped": ("reason",),
    "assembled": ("method",),
    "task_expanded": ("count",),
    "plan_revised": ("version", "added", "changed", "dropped", "reason"),
    "replan_stalled": ("reason",),
    "task_routed": ("router", "score", "fallback", "planned_worker"),
    "tool_called": ("tool", "key", "call_id"),
    "tool_finished": ("tool", "key", "call_id", "outcome", "latency"),
    "budget_exceeded": ("limit", "used", "allowed", "on_limit"),
    "context_compacted": ("purpose", "compacted", "tokens_before", "tokens_after", "failed"),
    "orchestrator_turn": ("turn", "final", "refused"),
    "nested": ("child_run_id", "depth"),
}

#: Fields that are a model's own words (a revision's reason, a reviewer's reasons): with
#: ``record_prompts=False`` they stay out of the logs, as the prompts and outputs do.
_MODEL_TEXT = {("plan_revised", "reason"), ("task_validated", "reasons")}

_PLAIN = re.compile(r"[\w.:/@+-]+")
#: What json.dumps leaves unescaped and a terminal would act on: DEL and C1 controls, line
#: separators, and bidirectional controls (they can show a line in another order).
_UNSAFE = re.compile(r"[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


class LoggingObserver:
    """Logs every event and settled call of a run (see the module docstring).

    ``events`` and ``calls`` are the loggers written to; the defaults are
    ``foreman.events`` and ``foreman.calls``. With ``record_prompts=False`` no text of the
    run is logged: ``run_started`` gives the request's length (``request_chars``), not the
    request, and the DEBUG lines of plans, outputs, answers and approval inputs are left
    out. ``None`` (the default) follows the orchestrator it is given to.
    """

    def __init__(
        self,
        events: logging.Logger | None = None,
        calls: logging.Logger | None = None,
        *,
        record_prompts: bool | None = None,
    ) -> None:
        self.events = events or EVENTS
        self.calls = calls or CALLS
        self.record_prompts = record_prompts

    def on_event(self, event: Any) -> None:
        if not self.events.isEnabledFor(logging.INFO):
            return
        kind = event.type
        ids = _ids(event.run_id, getattr(event, "task_id", None), getattr(event, "worker", None))
        private = self.record_prompts is False
        fields = [*ids, *((name, getattr(event, name, None)) for name in _FIELDS.get(kind, ()))]
        if private and kind == "run_started":  # the request is the user's text
            fields = [(name, value) for name, value in fields if name != "request"]
            fields.append(("request_chars", len(event.request)))
        elif private:
            fields = [(name, value) for name, value in fields if (kind, name) not in _MODEL_TEXT]
        fields += _extra_fields(kind, event)
        extra = _extra(event.run_id, fields, event=kind)
        self.events.info("%s", _line(kind, fields), extra=extra)
        if not private and self.events.isEnabledFor(logging.DEBUG):
            for name, content in _contents(kind, event):
                self.events.debug(
                    "%s", _line(f"{kind}.{name}", [*ids, (name, content)]), extra=extra
                )

    def on_call(self, record: CallRecord) -> None:
        if not self.calls.isEnabledFor(logging.INFO):
            return
        ids = [
            *_ids(record.run_id, record.task_id, record.worker),
            ("call", record.call_id),
            ("purpose", record.purpose.value),
        ]
        usage = record.usage
        fields = [
            *ids,
            ("model", record.model),
            ("answered_by", record.answered_by),
            ("attempt", record.attempt),
            ("status", record.status.value),
            ("input_tokens", usage.input_tokens),
            ("output_tokens", usage.output_tokens),
            ("cache_read_tokens", usage.cache_read_tokens or None),
            ("cache_write_tokens", usage.cache_write_tokens or None),
            ("estimated", record.estimated or None),
            ("cost_usd", _cost(record.cost_usd)),
            ("latency", record.latency),
            ("error_type", record.error_type),
            ("error", record.error),
        ]
        extra = _extra(record.run_id, fields, event="call")
        self.calls.info("%s", _line("call", fields), extra=extra)
        if self.record_prompts is not False and self.calls.isEnabledFor(logging.DEBUG):
            for name in ("prompt", "output"):
                content = getattr(record, name)
                if content is not None:
                    self.calls.debug(
                        "%s", _line(f"call.{name}", [*ids, (name, content)]), extra=extra
                    )


def _ids(run_id: str, task_id: str | None, worker: str | None) -> list[tuple[str, Any]]:
    return [("run", run_id), ("task", task_id), ("worker", worker)]


def _extra_fields(kind: str, event: Any) -> list[tuple[str, Any]]:
    """Summaries of the fields too big for an INFO line (their contents go to DEBUG)."""
    if kind == "plan_ready":
        return [("tasks", len(event.plan.tasks)), *_usage(event.usage)]
    if kind == "task_finished":
        return _usage(event.usage)
    if kind == "assembled":
        return [("answer_chars", len(event.answer))]
    if kind == "orchestrator_turn":
        return [("delegations", len(event.delegations)), *_usage(event.usage)]
    if kind == "nested":  # what happened in the nested run (its own run logs it whole)
        return [("event", event.event.type)]
    if kind == "run_finished":
        result = event.result
        return [
            ("status", result.status.value),
            ("calls", result.calls),
            *_usage(result.usage),
            ("cost_usd", _cost(result.cost_usd)),
            ("elapsed", result.elapsed),
            ("error", result.error),
        ]
    return []


def _contents(kind: str, event: Any) -> list[tuple[str, Any]]:
    """The full contents an event carries, logged at DEBUG."""
    getters: dict[str, Callable[[Any], list[tuple[str, Any]]]] = {
        "plan_ready": lambda e: [("plan", e.plan.model_dump(mode="json"))],
        "task_finished": lambda e: [("output", _jsonable(e.output))],
        "approval_requested": lambda e: [("inputs", e.inputs)],
        "assembled": lambda e: [("answer", e.answer)],
    }
    getter = getters.get(kind)
    return getter(event) if getter else []


def _usage(usage: Any) -> list[tuple[str, Any]]:
    return [("input_tokens", usage.input_tokens), ("output_tokens", usage.output_tokens)]


def _cost(cost_usd: float | None) -> str:
    """Dollars to the millionth (a cheap call costs less than a thousandth of a cent)."""
    return "unpriced" if cost_usd is None else f"{cost_usd:.6f}"


def _jsonable(value: Any) -> Any:
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def _extra(run_id: str, fields: list[tuple[str, Any]], *, event: str) -> dict[str, Any]:
    found = dict(fields)
    return {
        "run_id": run_id,
        "task_id": found.get("task"),
        "worker": found.get("worker"),
        "event": event,
    }


def _line(what: str, fields: list[tuple[str, Any]]) -> str:
    """``what key=value ...``, fields whose value is None left out."""
    parts = [what]
    parts += (f"{name}={_value(value)}" for name, value in fields if value is not None)
    return " ".join(parts)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) >= 0.001 or value == 0 else f"{value:.3g}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and _PLAIN.fullmatch(value):
        return value
    quoted = json.dumps(value, ensure_ascii=False, default=str)
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)
