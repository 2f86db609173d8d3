"""CLI behaviour that seeded bugs (mutation testing, issue 6) changed without a test failing:
a run id is never wrapped, the live view says what a task waits for and each review verdict,
the approval listing shows the instructions, the prompt's default note follows the answer,
and the plan tree starts a new branch exactly at its depth limit; `cancel` says what it did,
on one line; the prompt shows 2000 characters of input; a run runs 8 tasks at once by
default; an interrupted run exits 130."""

from __future__ import annotations

import asyncio
import os
import time

from rich.console import Console
from typer.testing import CliRunner

from foreman.cli import app
from foreman.cli.approvals import TerminalApprover, print_approval
from foreman.cli.common import EXIT_CODES
from foreman.cli.history import runs_table
from foreman.cli.render import MAX_TREE_DEPTH, LiveProgress, plan_tree, print_result
from foreman.events import ApprovalRequested, PlanReady, TaskValidated
from foreman.models.base import Usage
from foreman.results import RunResult, RunStatus
from foreman.store import LeaseOwner, RunRecord, SQLiteStore
from foreman.store.base import Approval, RunSummary
from foreman.testing import ScriptedModel
from helpers import Script, plan_of, task

runner = CliRunner()
RUN_ID = "20261202-134206-a1b2c3"  # the shape of a real run id


def text_of(renderable, width: int) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_a_narrow_runs_table_keeps_the_run_id_whole() -> None:
    summary = RunSummary(
        run_id=RUN_ID, request="a long request " * 5, status=RunStatus.succeeded, tasks=1,
        tasks_done=1, usage=Usage(), created_at=0, updated_at=0,
    )  # fmt: skip
    assert RUN_ID in text_of(runs_table([summary]), width=100)


def test_a_runs_age_counts_from_its_start_not_its_last_write() -> None:
    """As the dashboard's: a run started three days ago and resumed a minute ago is 3d old."""
    now = time.time()
    summary = RunSummary(
        run_id=RUN_ID, request="r", status=RunStatus.succeeded, tasks=1, tasks_done=1,
        usage=Usage(), created_at=now - 3 * 86400, updated_at=now - 60,
    )  # fmt: skip
    row = text_of(runs_table([summary]), width=200).splitlines()[-1]
    assert row.rstrip().endswith("3d")


def test_the_answer_footer_keeps_the_run_id_whole_on_a_narrow_terminal() -> None:
    result = RunResult(run_id=RUN_ID, request="x", status=RunStatus.succeeded, answer="done")
    console = Console(record=True, width=20, color_system=None)
    print_result(console, result)
    assert RUN_ID in console.export_text()


def test_the_live_view_says_a_task_waits_for_approval_and_at_what_risk() -> None:
    progress = LiveProgress(Console(record=True))
    progress.handle(PlanReady(run_id="r", plan=plan_of(task("t1", "deployer")), usage=Usage()))
    progress.handle(
        ApprovalRequested(run_id="r", task_id="t1", worker="deployer", risk="high", inputs="{}")
    )
    assert "high risk: waiting for approval" in text_of(progress, width=200)


def test_the_approval_listing_shows_the_instructions() -> None:
    approval = Approval(
        run_id="r", task_id="t1", worker="deployer", risk="medium",
        instructions="ship the release", inputs="{}",
    )  # fmt: skip
    console = Console(record=True, width=200, color_system=None)
    print_approval(console, approval)
    assert "instructions: ship the release" in console.export_text()


async def test_the_prompt_defaults_the_note_by_the_answer(monkeypatch) -> None:
    """Enter at the note prompt: no note for an approval, "rejected" for a rejection."""
    monkeypatch.setattr("rich.prompt.Prompt.ask", lambda *a, **k: k["default"])
    notes = {}
    for approved in (True, False):
        monkeypatch.setattr("rich.prompt.Confirm.ask", lambda *a, _v=approved, **k: _v)
        approval = Approval(
            run_id="r", task_id="t1", worker="deployer", risk="medium", instructions="i",
            inputs="{}",
        )  # fmt: skip
        assert await TerminalApprover(Console(record=True))(approval) is approved
        notes[approved] = approval.note
    assert notes == {True: None, False: "rejected"}


def test_the_plan_tree_starts_a_new_branch_exactly_at_the_depth_limit() -> None:
    chain = [task("t0", "writer")]
    chain += [task(f"t{k}", "writer", f"t{k - 1}") for k in range(1, MAX_TREE_DEPTH + 2)]
    text = text_of(plan_tree(plan_of(*chain)), width=400)
    # t0 .. t{MAX-1} nest; t{MAX} would be level MAX + 1, so it continues at the top
    assert f"… continued from t{MAX_TREE_DEPTH - 1}" in text
    assert text.count("continued from") == 1


# --- `foreman cancel` says what happened, on one line ------------------------------------


def stored_run(status: RunStatus, *, leased: bool = False) -> str:
    """A run in the CLI's store (FOREMAN_DB); ``leased``: a live process is running it."""

    async def create() -> None:
        store = SQLiteStore(os.environ["FOREMAN_DB"])
        try:
            await store.create_run(RunRecord(run_id=RUN_ID, request="x", status=status))
            if leased:
                await store.acquire_lease(RUN_ID, LeaseOwner(), ttl=600)
        finally:
            await store.aclose()

    asyncio.run(create())
    return RUN_ID


def test_cancelling_a_running_run_asks_it_to_stop(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")  # narrower than the message: it must not wrap
    run_id = stored_run(RunStatus.running, leased=True)
    result = runner.invoke(app, ["cancel", run_id])
    assert result.exit_code == 0, result.output
    assert f"Asked run {run_id} to stop: the process running it stops within" in result.output


def test_cancelling_a_paused_run_cancels_it_at_once(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "20")
    run_id = stored_run(RunStatus.waiting_approval)
    result = runner.invoke(app, ["cancel", run_id])
    assert result.exit_code == 0, result.output
    assert f"Run {run_id} cancelled." in result.output
    assert "Asked" not in result.output


async def test_the_prompt_shows_the_first_2000_characters_of_the_input(monkeypatch) -> None:
    monkeypatch.setattr("rich.prompt.Confirm.ask", lambda *a, **k: False)
    monkeypatch.setattr("rich.prompt.Prompt.ask", lambda *a, **k: "no")
    shown = Console(record=True, width=200, color_system=None)
    approval = Approval(
        run_id="r", task_id="t1", worker="deployer", risk="medium", instructions="i",
        inputs="a" * 2000 + "Z" * 500,
    )  # fmt: skip
    await TerminalApprover(shown)(approval)
    text = shown.export_text()
    assert text.count("a") >= 2000 and "Z" not in text
    assert "500 more characters" in text


def test_a_run_without_concurrency_runs_up_to_8_tasks_at_once(monkeypatch) -> None:
    model = ScriptedModel(Script(plan_of(task("t1"))))
    monkeypatch.setattr("foreman.models.pool.load_model", lambda name=None: model)
    result = runner.invoke(app, ["run", "x", "--assembly", "concat", "--json"])
    assert result.exit_code == 0, result.output

    async def settings() -> dict:
        store = SQLiteStore(os.environ["FOREMAN_DB"])
        try:
            (summary,) = await store.list_runs()
            return (await store.get_run(summary.run_id)).settings
        finally:
            await store.aclose()

    assert asyncio.run(settings())["concurrency"] == 8


def test_an_interrupted_run_exits_130_like_any_program_stopped_by_ctrl_c() -> None:
    assert EXIT_CODES[RunStatus.interrupted] == 130


def test_the_live_view_shows_each_review_verdict() -> None:
    progress = LiveProgress(Console(record=True))
    progress.handle(PlanReady(run_id="r", plan=plan_of(task("t1")), usage=Usage()))
    progress.handle(
        TaskValidated(run_id="r", task_id="t1", approved=False, reasons=["thin"], revision=0)
    )
    assert "review 1: rejected" in text_of(progress, width=200)
