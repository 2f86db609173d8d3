"""Tool calls on the books: an ``execute_tool`` span per call in its task's trace, and
the store's tool-call records behind ``foreman show RUN --calls`` and ``show RUN TASK``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from typer.testing import CliRunner

from foreman import Orchestrator
from foreman.cli import app
from foreman.models.base import ToolCall
from foreman.store import SQLiteStore
from foreman.testing import ScriptedModel
from foreman.tools import Toolbox, tool
from foreman.tracing import OTelObserver
from helpers import Script, plan_of, task, worker

PLAN = plan_of(task("t1", "clerk"))
MARKUP = "[bold red]boom[/] \x1b[31m"


@tool
def lookup(term: str) -> str:
    """Look a term up."""
    return f"{term}: found {MARKUP}"


def registry():
    from foreman.workers import Registry

    return Registry([worker("clerk", tools=("lookup",))], tools=Toolbox([lookup]))


def answer(request):
    if sum(message.role == "assistant" for message in request.messages) == 0:
        return [
            ToolCall(id="c1", name="lookup", arguments={"term": "dns"}),
            ToolCall(id="c2", name="rm_rf", arguments={"path": MARKUP}),
        ]
    return "answered"


async def test_each_tool_call_is_an_execute_tool_span_in_its_task() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    model = ScriptedModel(Script(PLAN, tasks={"do t1": answer}))
    orchestrator = Orchestrator(
        registry(), model=model, observers=[OTelObserver(provider)], assembly="concat"
    )
    await orchestrator.run("x", plan=PLAN)

    spans = exporter.get_finished_spans()
    (task_span,) = [s for s in spans if s.name == "foreman.task"]
    tools = sorted((s for s in spans if s.name.startswith("execute_tool")), key=lambda s: s.name)
    assert [s.name for s in tools] == ["execute_tool lookup", "execute_tool rm_rf"]
    for span in tools:
        assert span.parent.span_id == task_span.context.span_id
        assert span.attributes["gen_ai.operation.name"] == "execute_tool"
        assert span.attributes["foreman.task_id"] == "t1"
    ok, refused = tools
    assert ok.attributes["gen_ai.tool.name"] == "lookup"
    assert ok.attributes["gen_ai.tool.call.id"] == "c1"
    assert ok.attributes["foreman.tool.outcome"] == "ok"
    assert ok.status.status_code is not StatusCode.ERROR
    assert refused.attributes["foreman.tool.outcome"] == "refused"
    assert refused.status.status_code is StatusCode.ERROR


async def run_and_read(db: Path) -> tuple[str, list]:
    model = ScriptedModel(Script(PLAN, tasks={"do t1": answer}))
    orchestrator = Orchestrator(registry(), model=model, store=SQLiteStore(db), assembly="concat")
    async with orchestrator:
        result = await orchestrator.run("x", plan=PLAN)
    store = SQLiteStore(db)
    try:
        return result.run_id, await store.list_tool_calls(run_id=result.run_id)
    finally:
        await store.aclose()


def test_tool_calls_are_in_the_store_and_shown_literally(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    run_id, calls = asyncio.run(run_and_read(db))
    assert [(c.key, c.tool, c.outcome.value, c.worker) for c in calls] == [
        ("t1#1", "lookup", "ok", "clerk"),
        ("t1#2", "rm_rf", "refused", "clerk"),
    ]
    assert calls[0].latency is not None and calls[1].latency is None
    assert calls[0].result == f"dns: found {MARKUP}"

    runner = CliRunner(env={"COLUMNS": "250"})
    shown = runner.invoke(app, ["show", run_id, "--calls", "--db", str(db)])
    assert shown.exit_code == 0, shown.output
    assert "Tool calls of" in shown.output and "refused" in shown.output
    assert "[bold red]boom[/]" in shown.output  # markup shown as text, not applied
    assert "\x1b" not in shown.output
    one = runner.invoke(app, ["show", run_id, "t1", "--db", str(db), "--json"])
    assert one.exit_code == 0, one.output
    listed = json.loads(one.output)["tool_calls"]
    assert [(c["key"], c["outcome"], c["arguments"]) for c in listed] == [
        ("t1#1", "ok", {"term": "dns"}),
        ("t1#2", "refused", {"path": MARKUP}),
    ]
    task_view = runner.invoke(app, ["show", run_id, "t1", "--db", str(db)])
    assert task_view.exit_code == 0 and "lookup" in task_view.output


async def park_tool_approval(db: Path) -> str:
    from foreman.store import Approval, RunRecord

    store = SQLiteStore(db)
    try:
        await store.create_run(RunRecord(run_id="r1", request="x"))
        await store.request_approval(
            Approval(
                run_id="r1",
                task_id="t1#2",
                worker="clerk",
                risk="high",
                instructions="call the tool send_email",
                inputs=json.dumps({"to": MARKUP}),
                tool="send_email",
                arguments={"to": MARKUP},
            )
        )
    finally:
        await store.aclose()
    return "r1"


def test_a_tool_calls_approval_shows_the_tool_and_its_arguments_literally(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.db"
    run_id = asyncio.run(park_tool_approval(db))
    runner = CliRunner(env={"COLUMNS": "250"})

    listed = runner.invoke(app, ["approvals", "--db", str(db)])

    assert listed.exit_code == 0, listed.output
    assert "task t1#2" in listed.output and "tool: send_email" in listed.output
    assert "arguments, exactly as the tool receives them:" in listed.output
    assert "[bold red]boom[/]" in listed.output and "\x1b" not in listed.output
    decided = runner.invoke(app, ["approve", run_id, "t1#2", "--db", str(db)])
    assert decided.exit_code == 0, decided.output
    again = runner.invoke(app, ["approvals", "--all", "--json", "--db", str(db)])
    (shown,) = json.loads(again.output)
    assert (shown["task_id"], shown["status"], shown["arguments"]) == (
        "t1#2",
        "approved",
        {"to": MARKUP},
    )


async def test_the_terminal_prompt_shows_a_tool_calls_exact_arguments(monkeypatch) -> None:
    from rich.console import Console

    from foreman.cli.approvals import TerminalApprover
    from foreman.store import Approval

    typed: list[str] = []

    def ask(prompt, *args, **kwargs):
        typed.append(str(prompt))
        return "t1#2" if "type" in str(prompt) else ""

    monkeypatch.setattr("rich.prompt.Prompt.ask", ask)
    approval = Approval(
        run_id="r", task_id="t1#2", worker="clerk", risk="high",
        instructions="call the tool send_email", inputs=json.dumps({"to": MARKUP}),
        tool="send_email", arguments={"to": MARKUP},
    )  # fmt: skip
    console = Console(record=True, width=200, color_system=None)

    assert await TerminalApprover(console)(approval) is True  # typed the call's key

    shown = console.export_text()
    assert "Tool arguments:" in shown and "[bold red]boom[/]" in shown
    assert "t1#2" in typed[0]


def test_the_live_view_notes_tool_calls_and_their_approvals_literally() -> None:
    from rich.console import Console

    from foreman.cli.render import LiveProgress
    from foreman.events import ApprovalRequested, PlanReady, TaskStarted, ToolCalled
    from foreman.models.base import Usage

    def text_of(progress: LiveProgress) -> str:
        console = Console(record=True, width=200, color_system=None)
        console.print(progress)
        return console.export_text()

    progress = LiveProgress(Console(record=True))
    progress.handle(PlanReady(run_id="r", plan=PLAN, usage=Usage()))
    progress.handle(TaskStarted(run_id="r", task_id="t1", worker="clerk"))
    progress.handle(
        ToolCalled(
            run_id="r", task_id="t1", worker="clerk", tool="[red]x[/]", arguments={},
            call_id="c1", key="t1#1",
        )
    )  # fmt: skip
    assert "calling [red]x[/]" in text_of(progress)
    progress.handle(
        ApprovalRequested(
            run_id="r", task_id="t1#2", worker="clerk", risk="high", inputs="{}",
            tool="send_email", arguments={},
        )
    )  # fmt: skip
    shown = text_of(progress)
    assert "high risk tool send_email: waiting for approval" in shown
    assert "t1#2" not in shown  # the task's line, not a line of its own
