"""Model and user text never reaches a terminal as control sequences.

Every renderer gets strings carrying ESC sequences (one would clear the screen, one retitle
the window) and a bell, and must show them spelled out (``\\x1b``), keeping newlines and
tabs; ``--json`` and an answer piped to another program stay byte-exact.
"""

from __future__ import annotations

from rich.console import Console
from typer.testing import CliRunner

from foreman.cli import app
from foreman.cli.approvals import TerminalApprover, print_approval
from foreman.cli.calls import call_errors, calls_table, task_view
from foreman.cli.history import run_tree, runs_table
from foreman.cli.render import LiveProgress, plan_tree, print_result, workers_table
from foreman.cli.stats import stats_footer, stats_table
from foreman.cli.text import literal, safe_text
from foreman.events import PlanReady, PlanRejected, TaskFailed, TaskStarted
from foreman.ledger.records import CallRecord, CallStatus
from foreman.ledger.stats import GroupBy, group_calls
from foreman.models.base import Usage
from foreman.results import RunResult, RunStatus, TaskResult, TaskStatus
from foreman.store.base import Approval, RunRecord, RunSummary
from foreman.testing import ScriptedModel
from foreman.workers.registry import Registry
from helpers import Script, plan_of, task, worker

runner = CliRunner()

CLEAR = "\x1b[2J"  # clears the screen
TITLE = "\x1b]0;pwned\x07"  # retitles the window
REQUEST = f"compare{CLEAR} x\tand y\nplease"
TASK_ID = f"t{CLEAR}1"
WORKER = f"w{TITLE}"
OUTPUT = f"found{TITLE} it"
ERROR = f"bad{CLEAR} path"
PLAN = plan_of(task(TASK_ID, "researcher", instructions=f"read{CLEAR} it"))


def text_of(renderable, width: int = 200) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(renderable)
    return console.export_text()


def assert_safe(text: str, *expected: str) -> None:
    assert "\x1b" not in text and "\x07" not in text
    for part in expected:
        assert literal(part) in text


def test_literal_spells_out_control_characters_and_keeps_newlines_and_tabs() -> None:
    assert literal("a\x1b[2Jb\x07c\x9bd\x7fe") == "a\\x1b[2Jb\\x07c\\x9bd\\x7fe"
    assert literal("line\nnext\tcol") == "line\nnext\tcol"
    assert literal("déjà vu — ok") == "déjà vu — ok"
    assert safe_text(CLEAR, style="red").plain == "\\x1b[2J"


def test_show_tree_answer_and_runs_escape_control_characters() -> None:
    record = RunRecord(run_id="r1", request=REQUEST, status=RunStatus.partial, plan=PLAN)
    result = TaskResult(
        task_id=TASK_ID, worker="researcher", status=TaskStatus.failed, output=OUTPUT,
        error=ERROR, model=f"m{CLEAR}", unreviewed=ERROR,
    )  # fmt: skip
    assert_safe(text_of(run_tree(record, {TASK_ID: result}, full=True)), TASK_ID, OUTPUT, ERROR)
    summary = RunSummary(
        run_id="r1", request=REQUEST, status=RunStatus.succeeded, tasks=1, tasks_done=1,
        usage=Usage(), created_at=0, updated_at=0,
    )  # fmt: skip
    assert_safe(text_of(runs_table([summary])), "compare" + CLEAR)


def test_plan_workers_and_live_view_escape_control_characters() -> None:
    assert_safe(text_of(plan_tree(PLAN)), TASK_ID, f"read{CLEAR} it")
    team = Registry([worker("w1", description=f"reads{TITLE}")])
    assert_safe(text_of(workers_table(team)), f"reads{TITLE}")
    progress = LiveProgress(Console(record=True))
    progress.handle(PlanRejected(run_id="r", attempt=1, errors=[ERROR]))
    assert_safe(text_of(progress), ERROR)
    progress.handle(PlanReady(run_id="r", plan=PLAN, usage=Usage()))
    progress.handle(TaskStarted(run_id="r", task_id=TASK_ID, worker="researcher"))
    progress.handle(
        TaskFailed(run_id="r", task_id=TASK_ID, worker="researcher", error=ERROR, policy="skip")
    )
    assert_safe(text_of(progress), TASK_ID, ERROR)


def test_the_answer_panel_escapes_the_answer_and_the_error() -> None:
    for result in (
        RunResult(run_id="r", request=REQUEST, status=RunStatus.succeeded, answer=OUTPUT),
        RunResult(run_id="r", request=REQUEST, status=RunStatus.failed, error=ERROR),
    ):
        console = Console(record=True, width=120, color_system=None)
        print_result(console, result)
        assert_safe(console.export_text(), "\\x1b")


def _call(**fields) -> CallRecord:
    values = dict(
        run_id="r1", call_id="c1", parent=f"task:{TASK_ID}", purpose="task", task_id=TASK_ID,
        worker=WORKER, provider="p", model=f"m{CLEAR}", attempt=1, started_at=1.0, latency=1.0,
        usage=Usage(input_tokens=1), status=CallStatus.error, error_type="E", error=ERROR,
        prompt={"system": f"sys{TITLE}", "messages": [{"role": "user", "content": REQUEST}]},
        output=OUTPUT,
    )  # fmt: skip
    return CallRecord(**(values | fields))


def test_calls_table_task_view_and_stats_escape_control_characters() -> None:
    record = RunRecord(run_id="r1", request=REQUEST, status=RunStatus.partial, plan=PLAN)
    calls = [_call()]
    assert_safe(text_of(calls_table(record, calls)), WORKER)
    assert_safe(text_of(call_errors(calls)[0]), ERROR)
    view = task_view(record, PLAN.tasks[0], None, calls)
    assert_safe(text_of(view), TASK_ID, OUTPUT, "compare" + CLEAR, "y\nplease", f"sys{TITLE}")
    for by in (GroupBy.worker, GroupBy.model):
        assert_safe(text_of(stats_table(group_calls(calls, by), by)), "\\x1b")
    assert_safe("".join(text_of(line) for line in stats_footer(calls)), WORKER)


async def test_approvals_escape_control_characters(monkeypatch) -> None:
    monkeypatch.setattr("rich.prompt.Confirm.ask", lambda *a, **k: False)
    monkeypatch.setattr("rich.prompt.Prompt.ask", lambda *a, **k: "no")
    approval = Approval(
        run_id="r", task_id=TASK_ID, worker=WORKER, risk="high",
        instructions=f"delete{CLEAR}", inputs=f'{{"path": "{TITLE}"}}',
    )  # fmt: skip
    prompt = Console(record=True, width=200, color_system=None)
    await TerminalApprover(prompt)(approval)
    assert_safe(prompt.export_text(), TASK_ID, WORKER, f"delete{CLEAR}", TITLE)
    listing = Console(record=True, width=200, color_system=None)
    print_approval(listing, approval)
    assert_safe(listing.export_text(), TASK_ID, WORKER, f"delete{CLEAR}", TITLE)


def test_a_piped_answer_is_byte_exact_and_show_escapes_it(monkeypatch) -> None:
    """The answer of ``run`` to a pipe is the program's data, byte for byte; ``show`` (a
    terminal's view of the same run) spells the escape sequences out."""
    answer = f"FINAL{CLEAR}\tdone{TITLE}"
    model = ScriptedModel(Script(plan_of(task("t1")), tasks={"do t1": answer}), name="boss")
    monkeypatch.setattr("foreman.models.pool.load_model", lambda name=None: model)
    monkeypatch.delenv("FOREMAN_MODEL", raising=False)
    ran = runner.invoke(app, ["run", f"go{CLEAR}"])
    assert ran.exit_code == 0, ran.output
    assert ran.stdout == answer + "\n"
    shown_run = runner.invoke(app, ["show", "last"])
    assert shown_run.exit_code == 0
    assert_safe(shown_run.stdout, f"go{CLEAR}", f"FINAL{CLEAR}", f"done{TITLE}")
    listed = runner.invoke(app, ["runs"])
    assert_safe(listed.stdout, f"go{CLEAR}")
