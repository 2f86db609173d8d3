"""The CLI end to end, on a scripted model put where ``--model`` names would resolve."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import foreman
from foreman.cli import app
from foreman.errors import ModelError
from foreman.events import EVENT_ADAPTER
from foreman.store.sqlite import SQLiteStore
from foreman.testing import ScriptedModel
from helpers import Script, plan_of, task

runner = CliRunner()

PLAN = plan_of(task("t1", "researcher"), task("t2", "writer", "t1"))


def test_workers_lists_the_default_team() -> None:
    result = runner.invoke(app, ["workers"])
    assert result.exit_code == 0
    for name in ("researcher", "analyst", "writer", "coder", "summariser", "fact_checker"):
        assert name in result.output


def test_workers_reads_a_team_file(tmp_path) -> None:
    team = tmp_path / "team.yaml"
    team.write_text(
        "workers:\n  - name: poet\n    description: Writes poems.\n"
        "    system_prompt: You are a poet.\n"
    )
    result = runner.invoke(app, ["workers", "--team", str(team)])
    assert result.exit_code == 0
    assert "poet" in result.output and "researcher" not in result.output


def test_bad_team_file_is_a_clear_error_with_exit_code_1(tmp_path) -> None:
    team = tmp_path / "team.yaml"
    team.write_text("workers:\n  - name: poet\n")
    result = runner.invoke(app, ["run", "x", "--team", str(team)])
    assert result.exit_code == 1
    assert "worker #1" in result.output and "description" in result.output


def test_unknown_model_name_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FOREMAN_MODEL", raising=False)
    result = runner.invoke(app, ["plan", "x", "--model", "nosuch:thing"])
    assert result.exit_code == 1
    assert "Unknown model 'nosuch:thing'" in result.output


def test_plan_prints_the_tree_without_running(scripted) -> None:
    model = scripted(Script(PLAN))
    result = runner.invoke(app, ["plan", "write about TLS"])
    assert result.exit_code == 0, result.output
    assert "t1" in result.output and "researcher" in result.output
    assert "t2" in result.output and "writer" in result.output
    assert len(model.requests) == 1  # the planner only: nothing ran


def test_plan_json_round_trips(scripted) -> None:
    scripted(Script(PLAN))
    result = runner.invoke(app, ["plan", "x", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data.pop("estimate")["tasks"]  # the plan's estimate rides along (test_estimate.py)
    assert data == json.loads(PLAN.model_dump_json())


def test_run_json_prints_typed_events_as_lines(scripted) -> None:
    scripted(Script(PLAN, synthesis="THE ANSWER"))
    result = runner.invoke(app, ["run", "x", "--json"])
    assert result.exit_code == 0, result.output
    events = [EVENT_ADAPTER.validate_json(line) for line in result.output.splitlines()]
    kinds = [event.type for event in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert kinds.count("task_finished") == 2
    assert events[-1].result.answer == "THE ANSWER"


def test_run_prints_the_answer_when_piped(scripted) -> None:
    scripted(Script(PLAN, synthesis="THE ANSWER"))
    result = runner.invoke(app, ["run", "x"])
    assert result.exit_code == 0
    assert "THE ANSWER" in result.output


def test_partial_run_exits_3_and_says_what_is_missing(scripted, tmp_path) -> None:
    team = tmp_path / "team.toml"
    team.write_text(
        "include_defaults = true\n[[workers]]\nname = 'researcher'\n"
        "description = 'Finds facts.'\nsystem_prompt = 'You research.'\n"
        "retry = { max_attempts = 1 }\n"
    )
    scripted(Script(PLAN, tasks={"do t1": ModelError("400 bad request")}))
    result = runner.invoke(app, ["run", "x", "--team", str(team), "--assembly", "concat"])
    assert result.exit_code == 3
    assert "Partial result" in result.output and "t1 (researcher) failed" in result.output


def test_aborted_run_exits_4(scripted, tmp_path) -> None:
    team = tmp_path / "team.yaml"
    team.write_text(
        "include_defaults: true\nworkers:\n  - name: researcher\n"
        "    description: Finds facts.\n    system_prompt: You research.\n"
        "    on_failure: abort\n    retry: {max_attempts: 1}\n"
    )
    scripted(Script(PLAN, tasks={"do t1": ModelError("401 bad key")}))
    result = runner.invoke(app, ["run", "x", "--team", str(team)])
    assert result.exit_code == 4
    assert "Run aborted" in result.output and "401 bad key" in result.output


def test_no_valid_plan_exits_1_and_shows_the_plan(scripted) -> None:
    scripted(Script(["not json at all"] * 3))
    result = runner.invoke(app, ["run", "x"])
    assert result.exit_code == 1
    assert "no valid plan" in result.output and "not json at all" in result.output


@pytest.mark.parametrize(
    ("risk", "answers", "approved"),
    [
        ("high", ["y", "nope"], False),  # "y" is not an explicit approval of a high-risk task
        ("high", ["t2", "checked"], True),
        ("medium", [True, ""], True),
        ("medium", [False, "no"], False),
    ],
)
async def test_terminal_approver_asks_harder_for_high_risk(
    monkeypatch: pytest.MonkeyPatch, risk: str, answers: list, approved: bool
) -> None:
    from rich.console import Console

    from foreman.cli.approvals import TerminalApprover
    from foreman.store import Approval

    replies = iter(answers)
    monkeypatch.setattr("rich.prompt.Prompt.ask", lambda *a, **k: next(replies))
    monkeypatch.setattr("rich.prompt.Confirm.ask", lambda *a, **k: next(replies))
    shown = Console(record=True, width=100)
    approval = Approval(
        run_id="r", task_id="t2", worker="deployer", risk=risk, instructions="ship", inputs="{}"
    )

    assert await TerminalApprover(shown)(approval) is approved
    assert approval.note == (answers[1] or None)
    text = shown.export_text()
    assert "deployer" in text and f"{risk} risk" in text


async def test_a_failing_prompt_reaches_the_run_as_its_error(monkeypatch) -> None:
    from rich.console import Console

    from foreman.cli.approvals import TerminalApprover
    from foreman.store import Approval

    def broken(*args, **kwargs):
        raise OSError("terminal gone")  # not EOFError: no answer at all leaves the task waiting

    monkeypatch.setattr("rich.prompt.Confirm.ask", broken)
    approval = Approval(
        run_id="r", task_id="t2", worker="w", risk="medium", instructions="i", inputs="{}"
    )
    with pytest.raises(OSError, match="terminal gone"):
        await TerminalApprover(Console(record=True))(approval)


# --- user and model strings are data, never markup -----------------------------------------

MARKUP_REQUEST = "Summarise files under [/var/log]"
MARKUP_PLAN = plan_of(task("[t1]", "researcher"), task("t2", "writer", "[t1]"))


def last_run_id() -> str:
    async def newest() -> str:
        store = SQLiteStore(os.environ["FOREMAN_DB"])
        try:
            return (await store.list_runs(1))[0].run_id
        finally:
            await store.aclose()

    return asyncio.run(newest())


def test_markup_in_a_request_and_task_ids_survives_every_command(scripted) -> None:
    scripted(Script(MARKUP_PLAN, synthesis="THE ANSWER"))
    piped = runner.invoke(app, ["run", MARKUP_REQUEST])
    assert piped.exit_code == 0, piped.output
    assert "task_started [t1]" in piped.output

    runs = runner.invoke(app, ["runs"], env={"COLUMNS": "200"})
    assert runs.exit_code == 0, runs.output
    assert MARKUP_REQUEST in runs.output

    run_id = last_run_id()
    shown = runner.invoke(app, ["show", run_id], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert MARKUP_REQUEST in shown.output and "[t1] researcher" in shown.output

    scripted(Script(MARKUP_PLAN))
    planned = runner.invoke(app, ["plan", MARKUP_REQUEST], env={"COLUMNS": "200"})
    assert planned.exit_code == 0, planned.output
    assert "[t1] researcher" in planned.output


def test_an_error_message_with_markup_is_printed_literally(scripted) -> None:
    scripted(Script(["[/not a plan]"] * 3))
    result = runner.invoke(app, ["run", "x"])
    assert result.exit_code == 1
    assert "[/not a plan]" in result.output and "Traceback" not in result.output


# --- the request: text, stdin or a file; never empty, always UTF-8 --------------------------


def planned_request(model: ScriptedModel) -> str:
    return model.requests[0].messages[0].content


@pytest.mark.parametrize("request_text", ["", "   ", "\n\t "])
def test_an_empty_request_is_a_usage_error_that_spends_nothing(scripted, request_text) -> None:
    model = scripted(Script(PLAN))
    for command in ("run", "plan"):
        result = runner.invoke(app, [command, request_text])
        assert result.exit_code == 2, result.output
        assert "the request is empty" in result.output
    assert model.requests == []


def test_a_request_that_is_not_utf8_is_a_usage_error(scripted) -> None:
    model = scripted(Script(PLAN))
    # What Python makes of the bytes b"caf\xe9" in argv (a Latin-1 terminal): a lone surrogate.
    result = runner.invoke(app, ["run", "caf\udce9"])
    assert result.exit_code == 2, result.output
    assert "the request is not valid UTF-8 text" in result.output
    assert model.requests == []


def test_a_request_of_raw_bytes_in_a_real_process_is_one_clear_line() -> None:
    source = Path(foreman.__file__).parents[1]
    env = {**os.environ, "PYTHONPATH": str(source), "FOREMAN_MODEL": "nosuch:model"}
    done = subprocess.run(
        [sys.executable, "-m", "foreman", "plan", b"caf\xe9"],
        capture_output=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert b"not valid UTF-8" in done.stderr and b"Traceback" not in done.stderr


def test_dash_reads_the_request_from_stdin(scripted) -> None:
    model = scripted(Script(PLAN))
    result = runner.invoke(app, ["plan", "-"], input="write about [TLS]\nin detail\n")
    assert result.exit_code == 0, result.output
    assert planned_request(model) == "write about [TLS]\nin detail\n"


def test_at_file_reads_the_request_from_a_file(scripted, tmp_path) -> None:
    model = scripted(Script(PLAN))
    (tmp_path / "request.txt").write_text("a long request " * 10_000, encoding="utf-8")
    result = runner.invoke(app, ["plan", f"@{tmp_path / 'request.txt'}"])
    assert result.exit_code == 0, result.output
    assert planned_request(model) == "a long request " * 10_000


def test_bad_request_sources_are_usage_errors(scripted, tmp_path) -> None:
    model = scripted(Script(PLAN))
    (tmp_path / "binary.txt").write_bytes(b"\x00\xff\xfe")
    cases = [
        (["plan", f"@{tmp_path / 'missing.txt'}"], None, "cannot read the request file"),
        (["plan", f"@{tmp_path / 'binary.txt'}"], None, "is not UTF-8 text (byte 0xff at"),
        (["plan", "-"], b"caf\xe9", "read from stdin is not UTF-8 text"),
        (["plan", "-"], b"  \n", "the request is empty"),
    ]
    for args, stdin, message in cases:
        result = runner.invoke(app, args, input=stdin)
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split()), result.output
    assert model.requests == []


def test_a_binary_team_file_is_one_clear_line(tmp_path) -> None:
    team = tmp_path / "team.yaml"
    team.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    result = runner.invoke(app, ["workers", "--team", str(team)])
    assert result.exit_code == 1
    assert "is not UTF-8 text" in result.output and result.exception is not None
    assert isinstance(result.exception, SystemExit)


# --- run ids: never cut, always told ----------------------------------------------------------


def test_a_piped_run_prints_only_the_answer_on_stdout_and_its_id_on_stderr(scripted) -> None:
    scripted(Script(PLAN, synthesis="THE ANSWER"))
    result = runner.invoke(app, ["run", "x"])
    assert result.exit_code == 0
    assert result.stdout == "THE ANSWER\n"
    assert f"Run {last_run_id()}: succeeded" in result.stderr


def test_a_piped_run_waiting_for_approval_prints_no_none(scripted, tmp_path) -> None:
    team = tmp_path / "team.yaml"
    team.write_text(
        "include_defaults: true\nworkers:\n  - name: writer\n    description: Writes.\n"
        "    system_prompt: You write.\n    risk: high\n"
    )
    scripted(Script(PLAN, synthesis="THE ANSWER"))
    result = runner.invoke(app, ["run", "x", "--team", str(team)])
    assert result.exit_code == 5, result.output
    assert result.stdout == ""
    assert "None" not in result.output
    assert f"Run {last_run_id()} is waiting for approval of t2" in result.stderr
    assert result.stderr.count(last_run_id()) == 4  # told once, with the three commands


def test_the_answer_panel_never_cuts_the_run_id() -> None:
    from rich.console import Console

    from foreman.cli.render import print_result
    from foreman.results import RunResult, RunStatus

    result = RunResult(
        run_id="20261202-130000-abcdef", request="q", status=RunStatus.succeeded, answer="42"
    )
    for width in (40, 80):
        console = Console(record=True, width=width, color_system=None)
        print_result(console, result)
        assert "20261202-130000-abcdef" in console.export_text()


# --- every option reaches the run ---------------------------------------------------------------


def stored_settings() -> dict:
    run_id = last_run_id()

    async def read() -> dict:
        store = SQLiteStore(os.environ["FOREMAN_DB"])
        try:
            return (await store.get_run(run_id)).settings
        finally:
            await store.aclose()

    return asyncio.run(read())


def test_run_options_reach_the_run(scripted) -> None:
    model = scripted(Script(PLAN))
    args = ["--model", "work:er", "--planner-model", "plan:ner", "--concurrency", "3"]
    args += ["--max-tasks", "5", "--assembly", "concat", "--auto-approve", "medium"]
    args += ["--validator", "fact_checker", "--max-revisions", "2", "--timeout", "7.5"]
    args += ["--replan", "on-hint", "--max-replans", "4"]
    args += ["--context-budget", "4000"]
    args += ["--router", "embedding", "--router-fallback", "writer", "--memory"]
    result = runner.invoke(app, ["run", "x", *args])
    assert result.exit_code == 0, result.output
    assert stored_settings() | {"team": None} == {
        "model": "work:er",
        "planner_model": "plan:ner",
        "concurrency": 3,
        "max_tasks": 5,
        "max_plan_retries": 2,
        "validator": "fact_checker",
        "max_revisions": 2,
        "assembly": "concat",
        "auto_approve": "medium",
        "timeout": 7.5,
        "record_prompts": True,
        "plan_budget_usd": None,
        "team": None,
        "budget": None,
        "replan": "on-hint",
        "max_replans": 4,
        "context_budget": 4000,
        "mode": "plan",
        "max_turns": 8,
        "max_depth": 3,
        "router": "embedding",
        "router_fallback": "writer",
        "router_min_score": None,
        "embedder": None,
        "memory": True,
        "memory_limit": 1000,
        "memory_top_k": 3,
        "builtin_tools": [],
        "tool_root": None,
    }
    assert scripted.loaded[:2] == ["work:er", "plan:ner"]  # the default, then the planner
    planner_schema = model.requests[0].output_schema
    assert planner_schema["properties"]["tasks"]["maxItems"] == 5


def test_resume_model_reaches_the_resumed_tasks(scripted, tmp_path) -> None:
    team = tmp_path / "team.yaml"
    team.write_text(
        "include_defaults: true\nworkers:\n  - name: writer\n    description: Writes.\n"
        "    system_prompt: You write.\n    risk: medium\n"
    )
    scripted(Script(PLAN, synthesis="THE ANSWER"))
    assert runner.invoke(app, ["run", "x", "--team", str(team)]).exit_code == 5
    run_id = last_run_id()
    assert runner.invoke(app, ["approve", run_id, "t2"]).exit_code == 0
    scripted.loaded.clear()

    result = runner.invoke(app, ["resume", run_id, "--model", "other:one"])
    assert result.exit_code == 0, result.output
    assert scripted.loaded == ["other:one"]


def test_every_command_taking_a_run_accepts_a_prefix_or_last(scripted) -> None:
    scripted(Script(PLAN, synthesis="A"))
    assert runner.invoke(app, ["run", "first"]).exit_code == 0
    assert runner.invoke(app, ["run", "second"]).exit_code == 0
    newest = last_run_id()

    shown = runner.invoke(app, ["show", "last", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["request"] == "second"
    by_prefix = runner.invoke(app, ["show", newest[:-2], "--json"])
    assert json.loads(by_prefix.output)["run_id"] == newest

    ambiguous = runner.invoke(app, ["show", newest[:4]])
    assert ambiguous.exit_code == 1 and "matches 2 runs" in ambiguous.output
    resumed = runner.invoke(app, ["resume", "last"])
    assert resumed.exit_code == 1 and f"Run {newest} already finished" in resumed.output
    replayed = runner.invoke(app, ["replay", newest[:-1], "t1"])
    assert replayed.exit_code == 0 and "t1 replayed" in replayed.output
    for decide in (["approve", "last", "t1"], ["reject", "last", "t1", "--reason", "r"]):
        refused = runner.invoke(app, decide)
        assert refused.exit_code == 1 and f"of run '{newest}' is not waiting" in refused.output


def test_runs_says_which_model_has_no_price(scripted, monkeypatch) -> None:
    monkeypatch.delenv("FOREMAN_PRICES", raising=False)
    scripted(Script(PLAN, synthesis="A"))
    assert runner.invoke(app, ["run", "x", "--model", "mystery:model-x"]).exit_code == 0
    listed = runner.invoke(app, ["runs"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    assert "unknown" in listed.output and "$" not in listed.output
    # The ledger names the model that answered (here the scripted stand-in for it).
    assert "no price for scripted" in listed.output.replace("\n", " ")
    (row,) = json.loads(runner.invoke(app, ["runs", "--json"]).output)
    assert row["cost_usd"] is None and row["unpriced_models"] == ["scripted"]

    monkeypatch.setenv("FOREMAN_PRICES", '{"mystery:model-x": [1.0, 2.0], "scripted": [1, 2]}')
    (row,) = json.loads(runner.invoke(app, ["runs", "--json"]).output)
    assert row["cost_usd"] > 0 and row["unpriced_models"] == []
    # Each call is priced now as the total is: the rows add up to it, in every view.
    shown = json.loads(runner.invoke(app, ["show", "last", "--calls", "--json"]).output)
    rows = [call["cost_usd"] for call in shown["ledger"]]
    assert None not in rows and sum(rows) == pytest.approx(shown["cost_usd"])
    table = runner.invoke(app, ["show", "last", "--calls"], env={"COLUMNS": "200"}).output
    assert "unknown" not in table
