"""OpenTelemetry traces: the span tree of a run, its GenAI attributes and failures, seen
through the SDK's in-memory exporter; and the real CLI exporting over OTLP/HTTP to a
receiver started here, configured only by OTEL_* variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from typer.testing import CliRunner

from foreman import Orchestrator
from foreman.cli import app
from foreman.errors import ConfigError, ModelError, RateLimitError
from foreman.models.base import ModelResponse, Usage
from foreman.store.sqlite import SQLiteStore
from foreman.testing import ScriptedModel
from foreman.tracing import OTelObserver
from foreman.tracing.otel_env import wants_export
from helpers import Script, plan_of, task, worker

TEAM = [worker("researcher"), worker("writer"), worker("reviewer")]
PLAN = plan_of(task("t1"), task("t2", "writer", "t1"))
MODEL = "openai:gpt-4o-mini"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def observer(exporter: InMemorySpanExporter) -> OTelObserver:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return OTelObserver(provider)


class Tree:
    """Finished spans as a tree: ``shape()`` is ``(name, [children...])``, in start order."""

    def __init__(self, spans: tuple[ReadableSpan, ...]) -> None:
        self.spans = sorted(spans, key=lambda s: s.start_time)

    def children(self, span: ReadableSpan) -> list[ReadableSpan]:
        return [s for s in self.spans if s.parent and s.parent.span_id == span.context.span_id]

    @property
    def roots(self) -> list[ReadableSpan]:
        return [s for s in self.spans if s.parent is None]

    def shape(self, span: ReadableSpan) -> tuple:
        label = span.name
        if span.name in ("foreman.task", "foreman.validation"):
            label += f" {span.attributes['foreman.task_id']}"
        return (label, [self.shape(child) for child in self.children(span)])

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans if s.name == name]


async def run_traced(observer: OTelObserver, script: Script, **kwargs) -> str:
    model = ScriptedModel(script, name=MODEL)
    orchestrator = Orchestrator(TEAM, model=model, observers=[observer], **kwargs)
    result = await orchestrator.run("Explain DNS")
    return result.run_id


CALL = ("chat gpt-4o-mini", [])


async def test_one_trace_per_run_nested_as_it_happened(observer, exporter) -> None:
    run_id = await run_traced(observer, Script(PLAN), validator="reviewer")

    tree = Tree(exporter.get_finished_spans())
    [root] = tree.roots
    assert tree.shape(root) == (
        "foreman.run",
        [
            ("foreman.plan", [CALL]),
            ("foreman.task t1", [CALL, ("foreman.validation t1", [CALL])]),
            ("foreman.task t2", [CALL, ("foreman.validation t2", [CALL])]),
            ("foreman.synthesis", [CALL]),
        ],
    )
    assert {span.context.trace_id for span in tree.spans} == {root.context.trace_id}
    assert root.attributes["foreman.run_id"] == run_id
    assert root.attributes["foreman.request"] == "Explain DNS"
    assert root.attributes["foreman.status"] == "succeeded"
    assert root.status.status_code is StatusCode.UNSET
    assert {span.attributes["foreman.run_id"] for span in tree.spans} == {run_id}
    for span in tree.spans:  # every child inside its parent's time
        for child in tree.children(span):
            assert span.start_time <= child.start_time <= child.end_time <= span.end_time
    t1 = next(s for s in tree.named("foreman.task") if s.attributes["foreman.task_id"] == "t1")
    assert t1.attributes["foreman.worker"] == "researcher"
    [validation] = [
        s for s in tree.named("foreman.validation") if s.parent.span_id == t1.context.span_id
    ]
    assert validation.attributes["foreman.approved"] is True
    assert tree.children(validation)[0].attributes["foreman.purpose"] == "review"


async def test_call_spans_carry_the_genai_conventions_and_the_ledger(observer, exporter) -> None:
    answer = ModelResponse(
        text="out",
        model="gpt-4o-mini-2024-07-18",
        usage=Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=50),
    )
    script = Script(plan_of(task("t1")), tasks={"do t1": answer})
    orchestrator = Orchestrator(TEAM, model=ScriptedModel(script, name=MODEL), observers=[observer])
    result = await orchestrator.run("x")

    [call] = [
        s
        for s in exporter.get_finished_spans()
        if s.attributes.get("foreman.task_id") == "t1" and s.name.startswith("chat")
    ]
    [record] = await orchestrator.store.list_calls(run_id=result.run_id, task_id="t1")
    assert call.kind is SpanKind.CLIENT
    assert call.name == "chat gpt-4o-mini"
    assert call.attributes["gen_ai.operation.name"] == "chat"
    assert call.attributes["gen_ai.provider.name"] == "openai"
    assert call.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert call.attributes["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    # every input token, cached ones included, as the conventions ask (foreman's own
    # input_tokens, 1200, are the uncached ones)
    assert call.attributes["gen_ai.usage.input_tokens"] == 1250
    assert call.attributes["gen_ai.usage.output_tokens"] == 300
    assert call.attributes["gen_ai.usage.cache_read.input_tokens"] == 50
    assert call.attributes["foreman.worker"] == "researcher"
    assert call.attributes["foreman.purpose"] == "task"
    assert call.attributes["foreman.attempt"] == 1
    assert call.attributes["foreman.call_id"] == record.call_id
    assert record.cost_usd is not None and record.cost_usd > 0
    assert call.attributes["foreman.cost_usd"] == pytest.approx(record.cost_usd)
    assert call.attributes["foreman.estimated"] is False
    assert call.start_time == int(record.started_at * 1e9)
    assert call.end_time == int((record.started_at + record.latency) * 1e9)
    assert call.status.status_code is StatusCode.UNSET


async def test_retries_are_separate_call_spans_and_a_failure_is_an_error(
    observer, exporter
) -> None:
    script = Script(
        plan_of(task("t1")),
        tasks={"do t1": [RateLimitError("slow down"), ModelError("refused: 400")]},
    )
    await run_traced(observer, script)

    tree = Tree(exporter.get_finished_spans())
    [t1] = tree.named("foreman.task")
    first, second = tree.children(t1)
    assert [first.attributes["foreman.attempt"], second.attributes["foreman.attempt"]] == [1, 2]
    assert first.attributes["error.type"] == "RateLimitError"
    assert first.status.status_code is StatusCode.ERROR
    assert first.status.description == "slow down"
    assert second.attributes["error.type"] == "ModelError"
    assert t1.status.status_code is StatusCode.ERROR
    assert t1.attributes["foreman.status"] == "failed"
    assert [e.name for e in t1.events] == ["task_retried"]


async def test_a_failed_run_is_an_error_trace(observer, exporter) -> None:
    script = Script([ModelError("bad key")])
    with pytest.raises(ModelError):
        await run_traced(observer, script)

    tree = Tree(exporter.get_finished_spans())
    [root] = tree.roots
    assert tree.shape(root) == ("foreman.run", [("foreman.plan", [CALL])])
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes["error.type"] == "failed"
    assert "bad key" in root.status.description
    [planning] = tree.named("foreman.plan")
    assert planning.status.status_code is StatusCode.ERROR


async def test_an_interrupted_run_ends_at_close_and_its_resume_is_a_new_trace(
    observer, exporter, tmp_path: Path
) -> None:
    def slow_t2(request) -> float:
        return 60.0 if "do t2" in request.messages[0].content else 0.0

    def orchestrator(latency) -> Orchestrator:
        model = ScriptedModel(Script(PLAN), name=MODEL, latency=latency)
        store = SQLiteStore(tmp_path / "runs.db")
        return Orchestrator(TEAM, model=model, store=store, observers=[observer])

    first_try = orchestrator(slow_t2)
    events = first_try.stream("x")
    async for event in events:
        if event.type == "task_started" and event.task_id == "t2":
            break
    await events.aclose()  # leaving the stream cancels the run: interrupted
    await first_try.aclose()
    assert not exporter.get_finished_spans() or all(
        s.name != "foreman.run" for s in exporter.get_finished_spans()
    )
    observer.close()
    first = Tree(exporter.get_finished_spans())
    [root] = first.roots
    run_id = root.attributes["foreman.run_id"]
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes["foreman.status"] == "interrupted"
    t2 = next(s for s in first.named("foreman.task") if s.attributes["foreman.task_id"] == "t2")
    [cut] = first.children(t2)
    assert cut.attributes["foreman.status"] == "interrupted"
    assert cut.attributes["foreman.estimated"] is True

    exporter.clear()
    async with orchestrator(0.0) as second_try:
        await second_try.resume(run_id)
    [again] = Tree(exporter.get_finished_spans()).roots
    assert again.context.trace_id != root.context.trace_id
    assert again.attributes["foreman.run_id"] == run_id
    assert again.attributes["foreman.resumed"] is True


async def test_a_run_resumed_in_the_same_process_ends_its_first_trace(observer, exporter) -> None:
    """The first execution's spans were left open (never exported, not even by close())
    when the same observer saw the run start again."""
    model = ScriptedModel(Script(PLAN), name=MODEL, latency=lambda r: 60.0 if "do t2" in str(
        r.messages) else 0.0)  # fmt: skip
    orchestrator = Orchestrator(TEAM, model=model, observers=[observer])
    events = orchestrator.stream("x")
    async for event in events:
        if event.type == "task_started" and event.task_id == "t2":
            break
    await events.aclose()  # interrupted
    model._latency = 0.0
    [run] = await orchestrator.store.list_runs()
    await orchestrator.resume(run.run_id)

    roots = Tree(exporter.get_finished_spans()).roots
    assert [r.attributes["foreman.status"] for r in roots] == ["interrupted", "succeeded"]


async def test_a_retried_call_of_no_task_is_an_event_of_the_run(observer, exporter) -> None:
    """A delegate turn's retry made a `foreman.task` span with no task id."""
    tries = iter([RateLimitError("slow down", retry_after=0.0), "The answer."])

    def answer(request):
        if request.tools:  # the delegating orchestrator's turn
            return next(tries)
        return "out"

    model = ScriptedModel(answer, name=MODEL)
    orchestrator = Orchestrator(TEAM, model=model, observers=[observer], mode="delegate")
    await orchestrator.run("x")

    tree = Tree(exporter.get_finished_spans())
    assert tree.named("foreman.task") == []
    [root] = tree.roots
    assert [e.name for e in root.events] == ["call_retried"]


async def test_a_given_plan_has_no_planning_span(observer, exporter) -> None:
    orchestrator = Orchestrator(TEAM, model=ScriptedModel(Script(PLAN), name=MODEL),
                                observers=[observer])  # fmt: skip
    await orchestrator.run("x", plan=PLAN)
    tree = Tree(exporter.get_finished_spans())
    assert tree.named("foreman.plan") == []
    assert tree.roots[0].attributes["foreman.tasks"] == 2


async def test_without_prompts_no_reviewer_or_reviser_text_reaches_a_span(exporter) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    observer = OTelObserver(provider, record_prompts=False)
    await run_traced(observer, Script(PLAN), validator="reviewer")
    spans = exporter.get_finished_spans()
    assert [s for s in spans if s.name == "foreman.validation"]
    assert not [s for s in spans if "foreman.reasons" in s.attributes]


async def test_a_nested_run_is_traced_inside_the_task_it_carries_out(observer, exporter) -> None:
    """A team's nested run was a trace of its own, unlinked: its root now sits under its
    parent's task span, in the parent's trace."""
    from foreman.workers.nested import TeamWorker

    inner = plan_of(task("c1", "researcher"), task("c2", "writer", "c1"))

    class TwoSteps:  # a planned team: the nested run shares the parent's observers
        def workers(self):
            return [worker("researcher"), worker("writer")]

        def plan_for(self, request):
            return inner

    review = TeamWorker(name="review", description="Two steps.", team=TwoSteps())
    model = ScriptedModel(Script(inner, synthesis="both"), name=MODEL)
    top = Orchestrator([worker("researcher"), review], model=model, observers=[observer])
    result = await top.run("x", plan=plan_of(task("t1"), task("t2", "review", "t1")))

    tree = Tree(exporter.get_finished_spans())
    [root] = tree.roots
    assert {s.context.trace_id for s in tree.spans} == {root.context.trace_id}
    t2 = next(s for s in tree.named("foreman.task") if s.attributes["foreman.task_id"] == "t2")
    [nested] = [s for s in tree.children(t2) if s.name == "foreman.run"]
    assert nested.attributes["foreman.run_id"] == f"{result.run_id}.t2"


def test_enabled_without_opentelemetry_installed_is_one_clear_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.trace", None)  # import fails
    with pytest.raises(ConfigError, match=r"pip install 'foreman\[otel\]'"):
        OTelObserver()


def test_importing_foreman_imports_no_opentelemetry() -> None:
    code = (
        "import sys, foreman, foreman.tracing, foreman.cli\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, False),
        ({"OTEL_TRACES_EXPORTER": ""}, False),  # empty is unset, as the OTel spec says
        ({"OTEL_TRACES_EXPORTER": " ", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, True),
    ],
)
def test_export_is_on_only_when_otel_variables_ask(env: dict, wanted: bool) -> None:
    assert wants_export(env) is wanted


def test_cli_rejects_an_unsupported_exporter_in_one_line(monkeypatch, tmp_path: Path) -> None:
    model = ScriptedModel(Script(plan_of(task("t1"))))
    monkeypatch.setattr("foreman.models.pool.load_model", lambda name=None: model)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    result = CliRunner().invoke(app, ["run", "x", "--db", str(tmp_path / "r.db")])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: OTEL_TRACES_EXPORTER='zipkin' is not supported by foreman; use otlp, console "
        "or none."
    ]


def test_cli_console_exporter_writes_spans_to_stderr_only(monkeypatch, tmp_path: Path) -> None:
    model = ScriptedModel(Script(plan_of(task("t1"))))
    monkeypatch.setattr("foreman.models.pool.load_model", lambda name=None: model)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    result = CliRunner().invoke(app, ["run", "x", "--json", "--db", str(tmp_path / "r.db")])
    assert result.exit_code == 0
    events = [json.loads(line) for line in result.stdout.splitlines()]  # stdout: events only
    assert events[-1]["type"] == "run_finished"
    assert '"name": "foreman.run"' in result.stderr
    assert f'"foreman.run_id": "{events[0]["run_id"]}"' in result.stderr


# --- OTLP/HTTP to a receiver on localhost, from the real CLI ----------------------------


class Receiver(ThreadingHTTPServer):
    """Accepts ``POST /v1/traces`` (OTLP/HTTP protobuf) and keeps what it decoded."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[ExportTraceServiceRequest] = []
        self.headers_seen: list[dict[str, str]] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path != "/v1/traces":
            self.send_response(404)
            self.end_headers()
            return
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.server.requests.append(request)
        self.server.headers_seen.append(dict(self.headers))
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_the_cli_exports_each_run_over_otlp_http(receiver: Receiver, tmp_path: Path) -> None:
    spec = {
        "plan": plan_of(task("t1"), task("t2", "writer", "t1")).model_dump(exclude_none=True),
        "fail": {"do t2": "refused: 400"},
        "log": str(tmp_path / "calls.log"),
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_HEADERS": "x-team=blue",
        "OTEL_SERVICE_NAME": "foreman-test",
    }
    launcher = Path(__file__).with_name("scripted_cli.py")
    argv = [sys.executable, str(launcher), str(tmp_path / "spec.json"), "run", "Explain DNS"]
    done = subprocess.run(
        [*argv, "--json", "--db", str(tmp_path / "r.db")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 3, done.stderr  # partial: t2 failed
    run_id = json.loads(done.stdout.splitlines()[0])["run_id"]

    assert receiver.headers_seen and all(h["x-team"] == "blue" for h in receiver.headers_seen)
    resources = [rs for request in receiver.requests for rs in request.resource_spans]
    services = {
        a.value.string_value
        for rs in resources
        for a in rs.resource.attributes
        if a.key == "service.name"
    }
    assert services == {"foreman-test"}
    spans = [s for rs in resources for ss in rs.scope_spans for s in ss.spans]
    by_id = {s.span_id: s for s in spans}
    attrs = {s.span_id: _attributes(s) for s in spans}

    def path(span) -> list[str]:
        names = []
        while span is not None:
            names.append(span.name)
            span = by_id.get(span.parent_span_id)
        return names[::-1]

    assert sorted(" / ".join(path(s)) for s in spans) == sorted(
        [
            "foreman.run",
            "foreman.run / foreman.plan",
            "foreman.run / foreman.plan / chat scripted",
            "foreman.run / foreman.task",
            "foreman.run / foreman.task / chat scripted",
            "foreman.run / foreman.task",
            "foreman.run / foreman.task / chat scripted",
            "foreman.run / foreman.synthesis",
            "foreman.run / foreman.synthesis / chat scripted",
        ]
    )
    assert len({s.trace_id for s in spans}) == 1
    [root] = [s for s in spans if s.name == "foreman.run"]
    assert attrs[root.span_id]["foreman.run_id"] == run_id
    assert attrs[root.span_id]["foreman.status"] == "partial"
    [failed] = [
        s
        for s in spans
        if s.name.startswith("chat") and attrs[s.span_id].get("foreman.task_id") == "t2"
    ]
    assert attrs[failed.span_id]["error.type"] == "ModelError"
    assert failed.status.code == failed.status.STATUS_CODE_ERROR
    assert attrs[failed.span_id]["gen_ai.operation.name"] == "chat"


def _attributes(span) -> dict:
    def value(v):
        kind = v.WhichOneof("value")
        return getattr(v, kind) if kind else None

    return {a.key: value(a.value) for a in span.attributes}
