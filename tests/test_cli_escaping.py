"""Every user- or model-provided string is data: rendered literally, never parsed as markup.

Each renderer gets strings that look like rich markup (``[/var/log]`` closes nothing and
raises ``MarkupError`` when parsed; ``[bold]x[/]`` would silently vanish) and must show them
exactly as written.
"""

from __future__ import annotations

import time

from rich.console import Console

from foreman.cli.approvals import TerminalApprover, print_approval
from foreman.cli.history import run_tree, runs_table
from foreman.cli.render import LiveProgress, plan_tree, print_result, workers_table
from foreman.events import PlanReady, TaskFailed, TaskStarted
from foreman.models.base import Usage
from foreman.results import RunResult, RunStatus, TaskResult, TaskStatus
from foreman.store.base import Approval, RunRecord, RunSummary
from foreman.workers.registry import Registry
from helpers import plan_of, task, worker

REQUEST = "List [/var/log] and [bold]x[/]"
TASK_ID = "[t1]"
OUTPUT = "found [/etc] and [red]secret[/]"
ERROR = "bad path [/tmp/x]"
PLAN = plan_of(task(TASK_ID, "researcher", instructions="read [/var/log]"))


def text_of(renderable, width: int = 200) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_runs_table_shows_markup_like_requests_literally() -> None:
    summary = RunSummary(
        run_id="r1", request=REQUEST, status=RunStatus.succeeded, tasks=1, tasks_done=1,
        usage=Usage(), created_at=0, updated_at=0,
    )  # fmt: skip
    assert REQUEST in text_of(runs_table([summary]))


def test_show_renders_request_ids_outputs_and_errors_literally() -> None:
    record = RunRecord(run_id="r1", request=REQUEST, status=RunStatus.partial, plan=PLAN)
    result = TaskResult(
        task_id=TASK_ID, worker="researcher", status=TaskStatus.failed, output=OUTPUT,
        error=ERROR, model="[m]",
    )  # fmt: skip
    text = text_of(run_tree(record, {TASK_ID: result}, full=True))
    for literal in (REQUEST, TASK_ID, "read [/var/log]", OUTPUT, ERROR, "[m]"):
        assert literal in text


def test_plan_tree_renders_task_ids_and_instructions_literally() -> None:
    text = text_of(plan_tree(PLAN))
    assert TASK_ID in text and "read [/var/log]" in text


def test_workers_table_renders_descriptions_literally() -> None:
    team = Registry([worker("w1", description="Reads [/var/log] and [bold]more[/]")])
    assert "Reads [/var/log] and [bold]more[/]" in text_of(workers_table(team))


def test_live_view_renders_ids_and_errors_literally() -> None:
    progress = LiveProgress(Console(record=True))
    progress.handle(PlanReady(run_id="r", plan=PLAN, usage=Usage()))
    progress.handle(TaskStarted(run_id="r", task_id=TASK_ID, worker="researcher"))
    progress.handle(
        TaskFailed(run_id="r", task_id=TASK_ID, worker="researcher", error=ERROR, policy="skip")
    )
    text = text_of(progress)
    assert TASK_ID in text and ERROR in text


def test_answer_panel_renders_errors_literally() -> None:
    result = RunResult(run_id="r", request=REQUEST, status=RunStatus.failed, error=ERROR)
    console = Console(record=True, width=120, color_system=None)
    print_result(console, result)
    assert ERROR in console.export_text()


def test_answer_panel_keeps_html_in_the_answer_as_text() -> None:
    """Markdown rendering must not drop tags: an answer about HTML keeps its words."""
    answer = "Wrap it in a <div> tag.\n\n<script>alert(1)</script>\n\n**done**"
    result = RunResult(run_id="r", request=REQUEST, status=RunStatus.succeeded, answer=answer)
    console = Console(record=True, width=120, color_system=None)
    print_result(console, result)
    text = console.export_text()
    assert "Wrap it in a <div> tag." in text and "<script>alert(1)</script>" in text
    assert "**done**" not in text and "done" in text  # still Markdown


def test_answer_panel_shows_where_links_lead_and_keeps_line_breaks() -> None:
    """A model's link or image never hides its address behind words (or in a clickable
    terminal hyperlink), and lines the answer broke stay broken."""
    answer = "first line\nsecond line\nSee [the docs](http://evil.example/steal).\n\n![a cat](http://evil.example/cat.png)"
    result = RunResult(run_id="r", request=REQUEST, status=RunStatus.succeeded, answer=answer)
    console = Console(record=True, width=120, force_terminal=True)
    print_result(console, result)
    text, styled = console.export_text(), console.export_text(styles=True)
    lines = [line.strip("│ ") for line in text.splitlines()]
    assert "first line" in lines and "second line" in lines
    assert "the docs (http://evil.example/steal)" in text
    assert "[image: a cat](http://evil.example/cat.png)" in text
    assert "\x1b]8;" not in styled  # no OSC 8 hyperlink


async def test_approval_prompt_renders_ids_instructions_and_inputs_literally(
    monkeypatch,
) -> None:
    monkeypatch.setattr("rich.prompt.Confirm.ask", lambda *a, **k: False)
    monkeypatch.setattr("rich.prompt.Prompt.ask", lambda *a, **k: "no")
    shown = Console(record=True, width=200, color_system=None)
    approval = Approval(
        run_id="r", task_id=TASK_ID, worker="deployer", risk="medium",
        instructions="delete [/var/log]", inputs='{"path": "[/etc]"}',
    )  # fmt: skip
    await TerminalApprover(shown)(approval)
    text = shown.export_text()
    assert TASK_ID in text and "delete [/var/log]" in text and '{"path": "[/etc]"}' in text


async def test_an_approval_asked_again_says_the_task_may_have_run(monkeypatch) -> None:
    monkeypatch.setattr("rich.prompt.Confirm.ask", lambda *a, **k: False)
    monkeypatch.setattr("rich.prompt.Prompt.ask", lambda *a, **k: "no")
    approval = Approval(
        run_id="r", task_id="t1", worker="deployer", risk="medium",
        instructions="deploy", inputs="{}", may_have_run=True,
    )  # fmt: skip
    prompt = Console(record=True, width=200, color_system=None)
    await TerminalApprover(prompt)(approval)
    listing = Console(record=True, width=200, color_system=None)
    print_approval(listing, approval)
    for console in (prompt, listing):
        assert "side effects may already have happened" in console.export_text()
    fresh = Console(record=True, width=200, color_system=None)
    print_approval(fresh, approval.model_copy(update={"may_have_run": False}))
    assert "may already have happened" not in fresh.export_text()


async def test_no_answer_at_the_approval_prompt_leaves_the_task_waiting(monkeypatch) -> None:
    def closed(*args, **kwargs):
        raise EOFError  # Ctrl-D, or stdin closed

    monkeypatch.setattr("rich.prompt.Confirm.ask", closed)
    monkeypatch.setattr("rich.prompt.Prompt.ask", closed)
    for risk in ("medium", "high"):
        approval = Approval(
            run_id="r", task_id="t1", worker="deployer", risk=risk, instructions="i", inputs="{}"
        )
        shown = Console(record=True, width=200, color_system=None)
        assert await TerminalApprover(shown)(approval) is None
        assert "t1 waits for `foreman approve`" in shown.export_text()


def test_runs_at_80_columns_keeps_every_column_and_some_of_the_request() -> None:
    summary = RunSummary(
        run_id="20261202-140822-14f3d5", request="Compare PostgreSQL and SQLite",
        status="waiting_approval", tasks=4, tasks_done=2,
        usage=Usage(input_tokens=12_345, output_tokens=2_345), cost=0.0123,
        created_at=time.time(), updated_at=time.time(),
    )  # fmt: skip
    text = text_of(runs_table([summary]), width=80)
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
    for whole in ("20261202-140822-14f3d5", "waiting_approval", "2/4", "14,690", "$0.0123"):
        assert whole in text
    assert "Compare" in text


def test_show_says_when_a_requested_review_gave_no_verdict() -> None:
    record = RunRecord(run_id="r1", request="q", status=RunStatus.succeeded, plan=PLAN)
    result = TaskResult(
        task_id=TASK_ID, worker="researcher", status=TaskStatus.succeeded, output="o",
        unreviewed="the validator failed: [429]",
    )  # fmt: skip
    text = text_of(run_tree(record, {TASK_ID: result}))
    assert "not reviewed: the validator failed: [429]" in text


def test_bidirectional_controls_are_spelled_out_and_emoji_joiners_kept() -> None:
    """A right-to-left override in an argument a person approves would show it in another
    order than the tool receives it: spelled out, like ESC. A zero-width joiner (inside an
    emoji) only joins, and stays."""
    from foreman.cli.text import literal

    shown = literal("to=\u202etxt.exe\u202c, \u2066x\u2069 \x1b[2J 👨\u200d👩")
    assert shown == "to=\\u202etxt.exe\\u202c, \\u2066x\\u2069 \\x1b[2J 👨\u200d👩"
