"""OpenTelemetry traces of runs: one trace per run, a span for everything it did.

The tree, nested as it happened::

    foreman.run                      foreman.run_id, foreman.request, foreman.status...
                                     (foreman.request_chars with record_prompts=False)
    ├── foreman.plan                 planning (rejected plans are span events)
    │   └── chat <model>             each planner call attempt
    ├── foreman.task                 one per task: foreman.task_id, foreman.worker
    │   ├── chat <model>             each worker call attempt (retries, fallbacks, revisions)
    │   └── foreman.validation       one per review round: foreman.approved, foreman.revision
    │       └── chat <model>         each review call attempt
    └── foreman.synthesis
        └── chat <model>

Model call spans follow the GenAI semantic conventions (``gen_ai.operation.name``,
``gen_ai.provider.name``, ``gen_ai.request.model``, ``gen_ai.usage.input_tokens``...) and
carry ``foreman.*`` attributes from the call ledger (run, task, worker, purpose, attempt,
cost, whether tokens are estimated). Spans are made from what the engine reports, with the
times it recorded (a call's span is its ledger record: ``started_at`` plus ``latency``), so
the observer never touches the engine's clock or blocks its loop.

A resumed run is a new trace (its root has ``foreman.resumed=true``); the executions of one
run share ``foreman.run_id``. A run interrupted before it finished is ended by ``close()``
with status ERROR. OpenTelemetry itself is an optional extra (``pip install
'foreman[otel]'``), imported only when an ``OTelObserver`` is made.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from foreman.errors import ConfigError
from foreman.ledger.records import CallPurpose, CallRecord

INSTALL_HINT = "pip install 'foreman[otel]'"

#: Run statuses whose root span is marked ERROR (the others ended as planned).
ERROR_STATUSES = {"failed", "aborted", "cancelled", "interrupted", "crashed"}


def require(module: str) -> Any:
    """Import an OpenTelemetry module, or say in one line how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"OpenTelemetry tracing is enabled but {module} is not installed: {INSTALL_HINT}."
        ) from None


@dataclass
class _RunTrace:
    """The open spans of one run's execution."""

    run_id: str
    root: Any
    started: float
    last: float
    planning: Any = None
    synthesis: Any = None
    tasks: dict[str, Any] = field(default_factory=dict)
    #: Review calls of a task waiting for their round's ``task_validated``.
    reviews: dict[str, list[CallRecord]] = field(default_factory=dict)
    #: Tool calls running (their key ``<task>#<n>`` -> span), until ``tool_finished``.
    tools: dict[str, Any] = field(default_factory=dict)


class OTelObserver:
    """Sends each run to OpenTelemetry as one trace (see the module docstring).

    ``tracer_provider``: where spans go; the global one (``opentelemetry.trace``) when
    omitted, as for any instrumentation library. ``Orchestrator(observers=[OTelObserver()])``
    turns it on; the CLI does it when ``OTEL_*`` variables ask for export.
    """

    def __init__(self, tracer_provider: Any = None, *, record_prompts: bool | None = None) -> None:
        from foreman import __version__  # here: this module loads while foreman does

        #: ``False``: the root span gets ``foreman.request_chars`` (the request's length)
        #: instead of ``foreman.request``; ``None`` follows the orchestrator.
        self.record_prompts = record_prompts

        self._trace = require("opentelemetry.trace")
        provider = tracer_provider or self._trace.get_tracer_provider()
        self.tracer_provider = provider
        self._tracer = provider.get_tracer("foreman", __version__)
        self._runs: dict[str, _RunTrace] = {}

    # --- the observer ------------------------------------------------------------------

    def on_event(self, event: Any) -> None:
        kind = event.type
        if kind == "run_started":
            self._start_run(event)
            return
        run = self._runs.get(event.run_id)
        if run is None:
            return  # the run started before this observer was watching
        run.last = max(run.last, event.at)
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(run, event)

    def on_call(self, record: CallRecord) -> None:
        run = self._runs.get(record.run_id)
        if run is None:  # a replay, or a run this observer did not see start
            self._call_span(record, None)
            return
        run.last = max(run.last, record.started_at + record.latency)
        purpose = record.purpose
        if purpose is CallPurpose.review and record.task_id is not None:
            run.reviews.setdefault(record.task_id, []).append(record)
            return
        if purpose is CallPurpose.plan:
            parent = self._planning(run)
        elif purpose is CallPurpose.synthesis:
            parent = self._synthesis(run, record.started_at)
        elif purpose is CallPurpose.task and record.task_id is not None:
            parent = self._task(run, record.task_id, record.worker, record.started_at)
        else:
            parent = run.root
        self._call_span(record, parent)

    def close(self) -> None:
        """End the spans of runs that never finished (interrupted) and flush the provider.

        The CLI calls it at the end of every command; call it before your process exits
        if a run may have been cut short."""
        for run_id in list(self._runs):
            run = self._runs.pop(run_id)
            self._end_run(run, run.last, "interrupted", "the run stopped before it finished")
        flush = getattr(self.tracer_provider, "force_flush", None)
        if flush is not None:
            flush()

    # --- events ------------------------------------------------------------------------

    def _start_run(self, event: Any) -> None:
        attributes = {
            "foreman.run_id": event.run_id,
            "foreman.resumed": event.resumed,
        }
        if self.record_prompts is False:  # a sensitive deployment: the request stays home
            attributes["foreman.request_chars"] = len(event.request)
        else:
            attributes["foreman.request"] = event.request
        if (earlier := self._runs.pop(event.run_id, None)) is not None:  # resumed here
            why = "the run stopped before it finished"
            self._end_run(earlier, earlier.last, "interrupted", why)
        carrier = self._carrier(event.run_id)
        root = self._tracer.start_span(
            "foreman.run",
            context=self._trace.set_span_in_context(carrier) if carrier is not None else None,
            attributes=attributes,
            start_time=_ns(event.at),
        )
        self._runs[event.run_id] = _RunTrace(event.run_id, root, started=event.at, last=event.at)

    def _carrier(self, run_id: str) -> Any:
        """The span of the task a nested run carries out (its id is the parent's, a dot,
        the task's), when this observer traces the parent: the nested run's trace is then
        part of its parent's. ``None`` for a top-level run."""
        for run in self._runs.values():
            prefix = run.run_id + "."
            if run_id.startswith(prefix) and (span := run.tasks.get(run_id[len(prefix) :])):
                return span
        return None

    def _on_plan_rejected(self, run: _RunTrace, event: Any) -> None:
        attributes = {"foreman.attempt": event.attempt, "foreman.errors": event.errors}
        # After planning: a revision of the plan was refused (replanning), on the run's span.
        span = run.root if run.planning is _ENDED else self._planning(run)
        span.add_event("plan_rejected", attributes, _ns(event.at))

    def _on_plan_ready(self, run: _RunTrace, event: Any) -> None:
        run.root.set_attribute("foreman.tasks", len(event.plan.tasks))
        if run.planning is None:  # a plan given, or stored by an earlier execution
            run.planning = _ENDED
            return
        span = self._planning(run)
        span.set_attribute("foreman.tasks", len(event.plan.tasks))
        span.end(_ns(event.at))
        run.planning = _ENDED

    def _on_call_retried(self, run: _RunTrace, event: Any) -> None:
        if event.purpose == "plan":
            span = self._planning(run)
        elif event.purpose == "synthesis":
            span = self._synthesis(run, event.at)
        elif event.purpose == "replan" or event.task_id is None:  # a delegate turn, a route
            span = run.root
        else:
            span = self._task(run, event.task_id, None, event.at)
        span.add_event("call_retried", _retry_attributes(event), _ns(event.at))

    def _on_task_started(self, run: _RunTrace, event: Any) -> None:
        self._task(run, event.task_id, event.worker, event.at)

    def _on_task_retried(self, run: _RunTrace, event: Any) -> None:
        span = self._task(run, event.task_id, None, event.at)
        span.add_event("task_retried", _retry_attributes(event), _ns(event.at))

    def _on_task_fallback(self, run: _RunTrace, event: Any) -> None:
        attributes = {"foreman.kind": event.kind, "foreman.to": event.to, "error": event.error}
        self._task(run, event.task_id, None, event.at).add_event(
            "task_fallback", attributes, _ns(event.at)
        )

    def _on_task_validated(self, run: _RunTrace, event: Any) -> None:
        attributes: dict[str, Any] = {"foreman.revision": event.revision}
        if self.record_prompts is not False:  # the reasons are the reviewer's text
            attributes["foreman.reasons"] = event.reasons
        if event.approved is not None:
            attributes["foreman.approved"] = event.approved
        self._validation(run, event.task_id, event.at, attributes, failed=event.approved is None)

    def _on_approval_requested(self, run: _RunTrace, event: Any) -> None:
        attributes = {
            "foreman.task_id": event.task_id,
            "foreman.worker": event.worker,
            "foreman.risk": event.risk,
            "foreman.may_have_run": event.may_have_run,
        }
        if event.tool is not None:
            attributes["gen_ai.tool.name"] = event.tool
        run.root.add_event("approval_requested", attributes, _ns(event.at))

    def _on_approval_decided(self, run: _RunTrace, event: Any) -> None:
        attributes = {"foreman.task_id": event.task_id, "foreman.approved": event.approved}
        if event.note:
            attributes["foreman.note"] = event.note
        run.root.add_event("approval_decided", attributes, _ns(event.at))

    def _on_tool_called(self, run: _RunTrace, event: Any) -> None:
        """A tool call, as the GenAI conventions' ``execute_tool`` span, in its task."""
        attributes = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": event.tool,
            "gen_ai.tool.call.id": event.call_id,
            "foreman.run_id": run.run_id,
            "foreman.task_id": event.task_id,
            "foreman.tool.key": event.key,
        }
        task = self._task(run, event.task_id, event.worker, event.at)
        run.tools[event.key] = self._child(f"execute_tool {event.tool}", task, event.at, attributes)

    def _on_tool_finished(self, run: _RunTrace, event: Any) -> None:
        span = run.tools.pop(event.key, None)
        if span is None:
            return
        span.set_attribute("foreman.tool.outcome", event.outcome.value)
        if event.outcome.value != "ok":
            span.set_attribute("error.type", event.outcome.value)
            span.set_status(self._error(event.result))
        span.end(_ns(event.at))

    def _on_task_finished(self, run: _RunTrace, event: Any) -> None:
        span = self._task(run, event.task_id, event.worker, event.at)
        span.set_attributes(
            {
                "foreman.status": "succeeded",
                "foreman.attempts": event.attempts,
                **_usage("foreman.usage", event.usage),
            }
        )
        self._end_task(run, event.task_id, event.at)

    def _on_task_failed(self, run: _RunTrace, event: Any) -> None:
        span = self._task(run, event.task_id, event.worker, event.at)
        span.set_attributes(
            {
                "foreman.status": "failed",
                "foreman.policy": event.policy,
                "error.type": "task_failed",
            }
        )
        span.set_status(self._error(event.error))
        self._end_task(run, event.task_id, event.at)

    def _on_task_skipped(self, run: _RunTrace, event: Any) -> None:
        span = self._task(run, event.task_id, None, event.at)
        span.set_attributes({"foreman.status": "skipped", "foreman.reason": event.reason})
        self._end_task(run, event.task_id, event.at)

    def _on_task_expanded(self, run: _RunTrace, event: Any) -> None:
        """A for-each task's span runs from its expansion to its join."""
        span = self._task(run, event.task_id, None, event.at)
        span.set_attribute("foreman.items", event.count)

    def _on_plan_revised(self, run: _RunTrace, event: Any) -> None:
        attributes = {
            "foreman.plan_version": event.version,
            "foreman.added": event.added,
            "foreman.changed": event.changed,
            "foreman.dropped": event.dropped,
        }
        if self.record_prompts is not False:  # the reason is the model's text
            attributes["foreman.reason"] = event.reason
        run.root.add_event("plan_revised", attributes, _ns(event.at))

    def _on_replan_stalled(self, run: _RunTrace, event: Any) -> None:
        run.root.add_event("replan_stalled", {"foreman.reason": event.reason}, _ns(event.at))

    def _on_assembled(self, run: _RunTrace, event: Any) -> None:
        run.root.set_attribute("foreman.assembly", event.method)
        if event.method == "synthesis":
            self._synthesis(run, event.at).end(_ns(event.at))
            run.synthesis = _ENDED

    def _on_run_finished(self, run: _RunTrace, event: Any) -> None:
        result = event.result
        del self._runs[event.run_id]
        run.root.set_attributes(
            {
                "foreman.calls": result.calls,
                **_usage("foreman.usage", result.usage),
                **({"foreman.cost_usd": result.cost_usd} if result.cost_usd is not None else {}),
            }
        )
        self._end_run(run, event.at, result.status.value, result.error)

    # --- spans -------------------------------------------------------------------------

    def _child(self, name: str, parent: Any, start: float, attributes: dict[str, Any]) -> Any:
        """A span under ``parent`` (a new trace when None), started at ``start``."""
        context = self._trace.set_span_in_context(parent) if parent is not None else None
        kinds = self._trace.SpanKind
        return self._tracer.start_span(
            name,
            context=context,
            kind=kinds.CLIENT if name.startswith("chat") else kinds.INTERNAL,
            attributes=attributes,
            start_time=_ns(start),
        )

    def _planning(self, run: _RunTrace) -> Any:
        if run.planning is None or run.planning is _ENDED:
            attributes = {"foreman.run_id": run.run_id}
            run.planning = self._child("foreman.plan", run.root, run.started, attributes)
        return run.planning

    def _synthesis(self, run: _RunTrace, start: float) -> Any:
        if run.synthesis is None or run.synthesis is _ENDED:
            attributes = {"foreman.run_id": run.run_id}
            run.synthesis = self._child("foreman.synthesis", run.root, start, attributes)
        return run.synthesis

    def _task(self, run: _RunTrace, task_id: str, worker: str | None, start: float) -> Any:
        span = run.tasks.get(task_id)
        if span is None:
            attributes = {"foreman.run_id": run.run_id, "foreman.task_id": task_id}
            if worker is not None:
                attributes |= {"foreman.worker": worker, "gen_ai.agent.name": worker}
            span = run.tasks[task_id] = self._child("foreman.task", run.root, start, attributes)
        return span

    def _end_task(self, run: _RunTrace, task_id: str, at: float) -> None:
        if run.reviews.get(task_id):  # a review round that never got its verdict
            self._validation(run, task_id, at, {}, failed=True)
        run.tasks.pop(task_id).end(_ns(at))

    def _validation(
        self, run: _RunTrace, task_id: str, at: float, attributes: dict[str, Any], *, failed: bool
    ) -> None:
        """One review round: its calls, under a span from the first call to the verdict."""
        calls = run.reviews.pop(task_id, [])
        start = min((call.started_at for call in calls), default=at)
        task = self._task(run, task_id, None, start)
        ids = {"foreman.run_id": run.run_id, "foreman.task_id": task_id}
        span = self._child("foreman.validation", task, start, ids | attributes)
        for call in calls:
            self._call_span(call, span)
        if failed:
            span.set_status(self._error("the validator gave no verdict"))
        span.end(_ns(max(at, *(call.started_at + call.latency for call in calls))))

    def _end_run(self, run: _RunTrace, at: float, status: str, error: str | None) -> None:
        """End whatever is still open, then the root, with the run's outcome."""
        for span in run.tools.values():  # cut short: the process stopped during the call
            span.set_status(self._error("the run stopped during the tool call"))
            span.end(_ns(at))
        run.tools.clear()
        for task_id in list(run.tasks):
            self._end_task(run, task_id, at)
        for task_id in list(run.reviews):
            self._validation(run, task_id, at, {}, failed=True)
        for span in (run.planning, run.synthesis):
            if span is not None and span is not _ENDED:
                if status in ERROR_STATUSES:
                    span.set_status(self._error(error or status))
                span.end(_ns(at))
        run.root.set_attribute("foreman.status", status)
        if status in ERROR_STATUSES:
            run.root.set_attribute("error.type", status)
            run.root.set_status(self._error(error or status))
        run.root.end(_ns(at))

    def _call_span(self, record: CallRecord, parent: Any) -> None:
        """A model call attempt, as the GenAI semantic conventions describe one."""
        model = record.model.partition(":")[2] or record.model
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": record.provider,
            "gen_ai.request.model": model,
            # All input tokens, cached ones included (the GenAI conventions'); foreman's own
            # ``input_tokens`` are only the uncached ones, billed at the full rate.
            "gen_ai.usage.input_tokens": record.usage.input_tokens
            + record.usage.cache_read_tokens
            + record.usage.cache_write_tokens,
            "gen_ai.usage.output_tokens": record.usage.output_tokens,
            "foreman.run_id": record.run_id,
            "foreman.call_id": record.call_id,
            "foreman.purpose": record.purpose.value,
            "foreman.attempt": record.attempt,
            "foreman.status": record.status.value,
            "foreman.estimated": record.estimated,
        }
        optional = {
            "gen_ai.response.model": record.answered_by,
            "gen_ai.usage.cache_read.input_tokens": record.usage.cache_read_tokens or None,
            "gen_ai.usage.cache_creation.input_tokens": record.usage.cache_write_tokens or None,
            "gen_ai.agent.name": record.worker,
            "foreman.task_id": record.task_id,
            "foreman.worker": record.worker,
            "foreman.cost_usd": record.cost_usd,
        }
        attributes |= {key: value for key, value in optional.items() if value is not None}
        span = self._child(f"chat {model}", parent, record.started_at, attributes)
        if record.failed:
            span.set_attribute("error.type", record.error_type or record.status.value)
            span.set_status(self._error(record.error or record.status.value))
        span.end(_ns(record.started_at + record.latency))

    def _error(self, description: str) -> Any:
        return self._trace.Status(self._trace.StatusCode.ERROR, description)


#: Marks a planning or synthesis span that has ended (a later call opens a new one).
_ENDED = object()


def _retry_attributes(event: Any) -> dict[str, Any]:
    return {"foreman.attempt": event.attempt, "foreman.delay": event.delay, "error": event.error}


def _usage(prefix: str, usage: Any) -> dict[str, int]:
    return {
        f"{prefix}.input_tokens": usage.input_tokens,
        f"{prefix}.output_tokens": usage.output_tokens,
    }


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)
