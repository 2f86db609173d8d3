"""What every command offers a user and a script: help, version, JSON with stable fields,
run ids that are never cut, and approvals that show what they cover."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
import typer
from typer.testing import CliRunner

from foreman import __version__
from foreman.cli import app
from foreman.models.base import Usage
from foreman.results import RunStatus, TaskResult, TaskStatus
from foreman.store.base import Approval, RunRecord
from foreman.store.sqlite import SQLiteStore
from helpers import plan_of, task

runner = CliRunner()

RUN_ID = "20261202-130000-abcdef"
REQUEST = "Deploy [/srv/app] after review"
INPUTS = json.dumps({"instructions": "deploy [it]", "inputs": {"t1": "diff " * 80}})
COMMANDS = sorted(typer.main.get_command(app).commands)


@pytest.fixture
def stored_run() -> None:
    """A run waiting for approval of t2, after t1 succeeded."""

    async def seed() -> None:
        store = SQLiteStore(os.environ["FOREMAN_DB"])
        try:
            await store.create_run(RunRecord(run_id=RUN_ID, request=REQUEST))
            await store.save_plan(RUN_ID, plan_of(task("t1"), task("t2", "coder", "t1")))
            usage = Usage(input_tokens=120, output_tokens=30)
            await store.save_task(
                RUN_ID,
                TaskResult(
                    task_id="t1", worker="researcher", status=TaskStatus.succeeded,
                    output="found it", usage=usage,
                ),
            )  # fmt: skip
            await store.request_approval(
                Approval(
                    run_id=RUN_ID, task_id="t2", worker="coder", risk="high",
                    instructions="deploy [it]", inputs=INPUTS,
                )
            )  # fmt: skip
            await store.update_run(RUN_ID, status=RunStatus.waiting_approval, usage=usage)
        finally:
            await store.aclose()

    asyncio.run(seed())


# --- help and version -------------------------------------------------------------------------


def test_the_commands_are_all_there() -> None:
    expected = {"run", "plan", "workers", "resume", "replay", "runs", "show"}
    assert expected | {"approvals", "approve", "reject"} <= set(COMMANDS)


@pytest.mark.parametrize("command", ["", *COMMANDS])
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_every_command_has_help(command: str, flag: str) -> None:
    result = runner.invoke(app, [*command.split(), flag])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and "-h, --help" in result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"foreman {__version__}\n"


# --- JSON --------------------------------------------------------------------------------------


def test_runs_json_has_one_object_per_run_with_stable_fields(stored_run) -> None:
    result = runner.invoke(app, ["runs", "--json"])
    assert result.exit_code == 0, result.output
    [run] = json.loads(result.output)
    assert isinstance(run.pop("created_at"), float) and isinstance(run.pop("updated_at"), float)
    assert run == {
        "run_id": RUN_ID,
        "status": "waiting_approval",
        "request": REQUEST,
        "tasks_done": 1,
        "tasks_total": 2,
        "input_tokens": 120,
        "output_tokens": 30,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "cost_usd": None,  # the seeded run names no model: its tokens cannot be priced
        "unpriced_models": ["(no model)"],
        "budget_limit": None,  # the limit an over_budget run reached
        "error": None,  # why the run stopped, for one that failed (as the dashboard's API)
        "parent_run_id": None,  # set for a nested run (docs/hierarchies.md)
        "parent_task_id": None,
    }


def test_runs_json_of_an_empty_store_is_an_empty_array() -> None:
    result = runner.invoke(app, ["runs", "--json"])
    assert result.exit_code == 0 and json.loads(result.output) == []


def test_show_json_has_the_run_its_plan_and_every_task(stored_run) -> None:
    result = runner.invoke(app, ["show", RUN_ID, "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["run_id"] == RUN_ID and shown["request"] == REQUEST
    assert shown["status"] == "waiting_approval"
    assert [t["id"] for t in shown["plan"]["tasks"]] == ["t1", "t2"]
    assert [(t["task_id"], t["status"], t["output"]) for t in shown["tasks"]] == [
        ("t1", "succeeded", "found it")
    ]
    assert shown["usage"]["input_tokens"] == 120


def test_approvals_json_includes_the_exact_inputs(stored_run) -> None:
    result = runner.invoke(app, ["approvals", "--json"])
    assert result.exit_code == 0, result.output
    [approval] = json.loads(result.output)
    assert approval["run_id"] == RUN_ID and approval["task_id"] == "t2"
    assert approval["status"] == "pending" and approval["risk"] == "high"
    assert approval["inputs"] == INPUTS


def test_workers_json_lists_the_team_with_its_fields() -> None:
    result = runner.invoke(app, ["workers", "--json"])
    assert result.exit_code == 0, result.output
    workers = json.loads(result.output)
    assert [w["name"] for w in workers][:2] == ["researcher", "analyst"]
    assert {"name", "description", "model", "risk", "retry", "input_schema"} <= set(workers[0])
    assert workers[0]["retry"]["max_attempts"] == 3 and workers[0]["input_schema"] is None


# --- approvals: the exact inputs, ids never cut -------------------------------------------------


def test_approvals_shows_the_exact_input_and_whole_ids_at_80_columns(stored_run) -> None:
    result = runner.invoke(app, ["approvals"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert RUN_ID in result.output and "deploy [it]" in result.output
    assert INPUTS in result.output  # one line, unwrapped, exactly as the worker receives it
    assert f"foreman approve {RUN_ID} t2" in result.output


def test_the_interactive_prompt_says_when_it_shows_only_part_of_the_input(monkeypatch) -> None:
    from rich.console import Console

    from foreman.cli.approvals import SHOWN_INPUT, TerminalApprover

    monkeypatch.setattr("rich.prompt.Prompt.ask", lambda *a, **k: "no")
    shown = Console(record=True, width=100, color_system=None)
    approval = Approval(
        run_id="r", task_id="t2", worker="w", risk="high", instructions="i",
        inputs="x" * (SHOWN_INPUT + 500),
    )  # fmt: skip
    asyncio.run(TerminalApprover(shown)(approval))
    assert "… 500 more characters: `foreman approvals`" in shown.export_text()


def test_approvals_all_lists_decided_ones_with_their_note(stored_run) -> None:
    typo = runner.invoke(app, ["approve", RUN_ID, "t9"])
    assert (
        typo.exit_code == 1 and f"Run {RUN_ID} has no task 't9'; its tasks: t1, t2" in typo.output
    )
    blank = runner.invoke(app, ["reject", RUN_ID, "t2", "--reason", "  "])
    assert blank.exit_code == 2 and "say why the task is rejected" in blank.output
    assert runner.invoke(app, ["approvals"]).output != "No approvals pending.\n"  # undecided
    decided = runner.invoke(app, ["reject", RUN_ID, "t2", "--reason", "not on [Friday]"])
    assert decided.exit_code == 0, decided.output
    assert f"Task t2 of run {RUN_ID} rejected" in decided.output

    assert runner.invoke(app, ["approvals"]).output == "No approvals pending.\n"
    listed = runner.invoke(app, ["approvals", "--all"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    assert "rejected" in listed.output and "note: not on [Friday]" in listed.output
    assert "decide:" not in listed.output  # nothing left to decide


def test_show_full_prints_whole_outputs_and_otherwise_their_first_line() -> None:
    async def seed() -> None:
        store = SQLiteStore(os.environ["FOREMAN_DB"])
        try:
            await store.create_run(RunRecord(run_id="r1", request="q"))
            await store.save_plan("r1", plan_of(task("t1")))
            output = "first line\n" + "\n".join(f"line {k}" for k in range(2, 6))
            await store.save_task(
                "r1",
                TaskResult(
                    task_id="t1", worker="researcher", status=TaskStatus.succeeded, output=output
                ),
            )
        finally:
            await store.aclose()

    asyncio.run(seed())
    brief = runner.invoke(app, ["show", "r1"], env={"COLUMNS": "120"})
    assert "first line" in brief.output and "line 2" not in brief.output
    full = runner.invoke(app, ["show", "r1", "--full"], env={"COLUMNS": "120"})
    assert all(f"line {k}" in full.output for k in range(2, 6))


def test_approving_a_task_whose_id_has_a_hash_that_did_not_ask_says_so() -> None:
    """A task may be named ``x#1``: it is a task of the run, not a mistyped one."""

    async def seed() -> None:
        store = SQLiteStore(os.environ["FOREMAN_DB"])
        try:
            await store.create_run(RunRecord(run_id=RUN_ID, request=REQUEST))
            await store.save_plan(RUN_ID, plan_of(task("x#1")))
            await store.save_task(
                RUN_ID, TaskResult(task_id="x#1", worker="researcher", status=TaskStatus.succeeded)
            )
            await store.update_run(RUN_ID, status=RunStatus.succeeded)
        finally:
            await store.aclose()

    asyncio.run(seed())
    result = runner.invoke(app, ["approve", RUN_ID, "x#1"])
    assert result.exit_code == 1
    assert "is not waiting for approval" in result.output and "has no task" not in result.output
