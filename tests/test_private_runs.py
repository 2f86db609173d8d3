"""``record_prompts=False`` keeps the run's text out of logs and traces: the request is
replaced by its length (``request_chars``), and no DEBUG line carries a plan, an output,
an answer or a prompt. Observers follow the orchestrator unless told otherwise."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from foreman import Orchestrator
from foreman.testing import ScriptedModel
from foreman.tracing import LoggingObserver, OTelObserver
from helpers import Script, plan_of, task, worker

TEAM = [worker("researcher"), worker("writer")]
PLAN = plan_of(task("t1"), task("t2", "writer", "t1"))
SECRET = "the patient's diagnosis: secret-7781"


def traced(**options) -> tuple[OTelObserver, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return OTelObserver(provider, **options), exporter


async def run(record_prompts: bool, observer: OTelObserver) -> str:
    model = ScriptedModel(Script(PLAN, tasks={"do t2": f"about {SECRET}"}))
    o = Orchestrator(TEAM, model=model, record_prompts=record_prompts, observers=[observer])
    return (await o.run(SECRET)).run_id


def root_attributes(exporter: InMemorySpanExporter) -> dict:
    [root] = [span for span in exporter.get_finished_spans() if span.name == "foreman.run"]
    return dict(root.attributes or {})


@pytest.mark.parametrize("record_prompts", [True, False])
async def test_logs_and_the_root_span_carry_the_request_only_when_prompts_are_kept(
    caplog, record_prompts: bool
) -> None:
    caplog.set_level(logging.DEBUG, logger="foreman")
    observer, exporter = traced()
    run_id = await run(record_prompts, observer)

    logged = "\n".join(record.getMessage() for record in caplog.records)
    started = next(r.getMessage() for r in caplog.records if "run_started" in r.getMessage())
    attributes = root_attributes(exporter)
    assert attributes["foreman.run_id"] == run_id
    if record_prompts:
        assert SECRET in started and attributes["foreman.request"] == SECRET
        assert "assembled.answer" in logged and "call.prompt" in logged
    else:
        assert f"request_chars={len(SECRET)}" in started
        assert "foreman.request" not in attributes
        assert attributes["foreman.request_chars"] == len(SECRET)
        assert "secret-7781" not in logged  # nor in a plan, an output or an answer at DEBUG
        assert not any(span for span in exporter.get_finished_spans() if _mentions(span))


def _mentions(span) -> bool:
    return any("secret-7781" in str(value) for value in (span.attributes or {}).values())


async def test_an_observer_told_explicitly_keeps_its_own_setting(caplog) -> None:
    caplog.set_level(logging.INFO, logger="foreman")
    observer, exporter = traced(record_prompts=False)
    model = ScriptedModel(Script(PLAN))
    quiet = LoggingObserver(record_prompts=False)
    o = Orchestrator(TEAM, model=model, observers=[quiet, observer])  # prompts kept
    await o.run(SECRET)
    assert "secret-7781" not in "\n".join(r.getMessage() for r in caplog.records)
    assert "foreman.request" not in root_attributes(exporter)
    assert (await o.store.list_calls(with_prompts=True))[0].prompt is not None


async def test_an_observer_told_explicitly_logs_no_prompt_or_output_at_debug(caplog) -> None:
    """The orchestrator keeps prompts (its ledger has them), but this observer was told not
    to: its DEBUG lines carry neither the calls' prompts nor their outputs."""
    caplog.set_level(logging.DEBUG, logger="foreman")
    model = ScriptedModel(Script(PLAN, tasks={"do t2": f"about {SECRET}"}))
    quiet = LoggingObserver(record_prompts=False)
    o = Orchestrator(TEAM, model=model, observers=[quiet])  # prompts kept
    await o.run(SECRET)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "secret-7781" not in logged
    assert "call.prompt" not in logged and "call.output" not in logged
    assert (await o.store.list_calls(with_prompts=True))[0].prompt is not None
