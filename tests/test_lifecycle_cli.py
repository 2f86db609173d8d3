"""A run never lies about its state, seen from real ``foreman`` processes: SIGTERM is Ctrl-C,
a run that fails in planning is ``failed`` with ``run_finished`` last, bad models and keys
fail before a run is recorded, ``--timeout`` reaches the calls, and an approved task a
``kill -9`` cut short asks again on resume."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from cli_runs import ScriptedCli, plan
from foreman.events import EVENT_ADAPTER
from helpers import HIGH_RISK_TEAM

DEADLINE = 60.0  # seconds a child may take to reach a state before the test fails


DAG = plan(
    ("t1", "researcher", []),
    ("t2", "researcher", ["t1"]),
    ("t3", "analyst", ["t1"]),
    ("t4", "writer", ["t2", "t3"]),
)


class Foreman(ScriptedCli):
    """``foreman`` subcommands in fresh processes (tests/scripted_cli.py) on one database."""

    def __init__(self, tmp_path: Path, spec: dict) -> None:
        super().__init__(tmp_path, spec)
        self.children: list[subprocess.Popen[str]] = []

    def start(self, *args: str) -> tuple[subprocess.Popen[str], Path, Path]:
        """Start a command in the background, its output going to files (never a pipe that
        could fill up or block a read)."""
        out, err = self.tmp / f"out-{len(self.children)}", self.tmp / f"err-{len(self.children)}"
        with out.open("w") as stdout, err.open("w") as stderr:
            process = subprocess.Popen(
                self.command(*args),
                stdout=stdout,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                text=True,
                # Signals reach the child as the test sends them, whatever the test runner's
                # own signal dispositions were (a background job inherits an ignored SIGINT).
                start_new_session=True,
            )
        self.children.append(process)
        return process, out, err

    def query(self, sql: str, *args: object) -> list[tuple]:
        with sqlite3.connect(self.db) as db:
            return db.execute(sql, args).fetchall()

    def kill_children(self) -> None:
        for process in self.children:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)


@pytest.fixture
def foreman(tmp_path: Path):
    made: list[Foreman] = []

    def make(spec: dict) -> Foreman:
        made.append(Foreman(tmp_path, spec))
        return made[-1]

    yield make
    for each in made:
        each.kill_children()


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def events_of(output: str) -> list:
    return [EVENT_ADAPTER.validate_json(line) for line in output.splitlines() if line.strip()]


def db_ready(f: Foreman) -> bool:
    return f.db.exists() and bool(f.query("SELECT name FROM sqlite_master WHERE name = 'runs'"))


# --- SIGTERM is Ctrl-C --------------------------------------------------------------------


def test_sigterm_marks_the_run_interrupted_and_resume_finishes_it(foreman) -> None:
    f = foreman({"plan": DAG, "latency": {"do t3": 60}})
    process, _, err = f.start("run", "--json", "write it")

    def t3_running_after_t1_t2() -> bool:
        if "t3" not in f.calls() or not db_ready(f):
            return False
        done = {row[0] for row in f.query("SELECT task_id FROM tasks")}
        return {"t1", "t2"} <= done

    wait_until(t3_running_after_t1_t2, "t3 under way with t1 and t2 checkpointed")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 130, err.read_text()
    [(run_id, status, spent)] = f.query("SELECT run_id, status, input_tokens FROM runs")
    assert status == "interrupted" and spent > 0
    assert f"foreman resume {run_id}" in err.read_text()

    f.set_spec({"plan": DAG})
    resumed = f.run("resume", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert events_of(resumed.stdout)[-1].result.status.value == "succeeded"
    assert f.calls() == Counter({"t1": 1, "t2": 1, "t3": 2, "t4": 1})


# --- failures before and during planning ---------------------------------------------------


def test_a_run_whose_planning_fails_is_failed_with_run_finished_last(foreman) -> None:
    bad = plan(("t1", "nobody", []))  # never a valid plan: the planner gives up
    f = foreman({"plan": bad})
    result = f.run("run", "--json", "write it")
    assert result.returncode == 1
    assert "no valid plan" in result.stderr and "Traceback" not in result.stderr
    events = events_of(result.stdout)
    assert [e.type for e in events][-1] == "run_finished"
    assert events[-1].result.status.value == "failed"
    assert f"Run {events[-1].run_id}: failed" in result.stderr  # its id, to show or resume it
    [(status, error, spent)] = f.query("SELECT status, error, input_tokens FROM runs")
    assert status == "failed" and "no valid plan" in error and spent > 0

    listed = f.run("runs")
    assert "failed" in listed.stdout and "running" not in listed.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "nowhere:model-x"], "Unknown model 'nowhere:model-x'"),
        (["--model", "openai:gpt-x"], "OPENAI_API_KEY"),
        (["--planner-model", "anthropic:claude-x"], "ANTHROPIC_API_KEY"),
    ],
    ids=["unknown-model", "missing-openai-key", "missing-anthropic-key"],
)
def test_a_bad_model_or_missing_key_fails_before_a_run_is_recorded(
    tmp_path: Path, args: list[str], message: str
) -> None:
    db = tmp_path / "runs.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))}
    env["FOREMAN_MODEL"] = "local"
    result = subprocess.run(
        [sys.executable, "-m", "foreman", "run", "write it", *args, "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    if db.exists():
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM runs").fetchone() == (0,)


# --- --timeout -------------------------------------------------------------------------------


SLOW_TEAM = """\
include_defaults: true
workers:
  - name: slowpoke
    description: Answers slowly.
    system_prompt: You are slow.
    risk: high
    retry: {max_attempts: 1}
"""


def test_the_timeout_option_reaches_the_calls_and_resume_keeps_it(foreman, tmp_path) -> None:
    team = tmp_path / "team.yaml"
    team.write_text(SLOW_TEAM)
    dag = plan(("t1", "researcher", []), ("t2", "slowpoke", ["t1"]))
    f = foreman({"plan": dag, "latency": {"do t2": 60}})
    first = f.run("run", "--json", "--team", str(team), "--timeout", "0.2", "write it")
    assert first.returncode == 5, first.stderr  # t2 waits for approval
    result = events_of(first.stdout)[-1].result
    [(settings,)] = f.query("SELECT settings FROM runs")
    assert json.loads(settings)["timeout"] == 0.2

    assert f.run("approve", result.run_id, "t2").returncode == 0
    resumed = f.run("resume", result.run_id, "--json")  # no --timeout: the run's own
    assert resumed.returncode == 3, resumed.stderr  # partial: t2's one attempt timed out
    final = events_of(resumed.stdout)[-1].result
    assert final.tasks["t2"].status.value == "failed"
    assert "within 0.2s" in final.tasks["t2"].error


# --- an approval covers one execution ---------------------------------------------------------


def test_an_approved_task_killed_mid_call_asks_again_on_resume(foreman, tmp_path) -> None:
    team = tmp_path / "team.yaml"
    team.write_text(HIGH_RISK_TEAM)
    dag = plan(("t1", "researcher", []), ("t2", "deployer", ["t1"]), ("t3", "writer", ["t2"]))
    f = foreman({"plan": dag})
    first = f.run("run", "--json", "--team", str(team), "ship it")
    assert first.returncode == 5, first.stderr
    run_id = events_of(first.stdout)[-1].run_id
    assert f.run("approve", run_id, "t2").returncode == 0

    f.set_spec({"plan": dag, "latency": {"do t2": 60}})
    process, _, _ = f.start("resume", run_id, "--json")
    wait_until(lambda: "t2" in f.calls(), "the approved deploy to start")
    process.kill()  # SIGKILL: no cleanup of any kind
    process.wait(timeout=30)

    f.set_spec({"plan": dag})
    again = f.run("resume", run_id, "--json")
    assert again.returncode == 5, again.stderr  # waits: it may have deployed already
    events = events_of(again.stdout)
    [asked] = [e for e in events if e.type == "approval_requested"]
    assert asked.task_id == "t2" and asked.may_have_run
    assert f.calls() == Counter({"t1": 1, "t2": 1})
    listed = f.run("approvals")
    assert run_id in listed.stdout and "deployer" in listed.stdout

    assert f.run("approve", run_id, "t2", "--note", "checked: not deployed").returncode == 0
    final = f.run("resume", run_id, "--json")
    assert final.returncode == 0, final.stderr
    assert f.calls() == Counter({"t1": 1, "t2": 2, "t3": 1})


# --- an error of the CLI's own ------------------------------------------------------------


def test_an_error_while_showing_an_event_fails_the_run_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In process (the renderer is replaced by one that breaks): one line, exit 1, and the
    run recorded as failed with ``run_finished`` as its last stored event."""
    from typer.testing import CliRunner

    from foreman.cli import app
    from foreman.testing import ScriptedModel
    from helpers import Script, plan_of, task

    model = ScriptedModel(Script(plan_of(task("t1"), task("t2", "writer", "t1"))))
    monkeypatch.setattr("foreman.models.pool.load_model", lambda name=None: model)

    def broken(event) -> None:
        if event.type == "task_started":
            raise ValueError("cannot draw this")

    monkeypatch.setattr("foreman.cli.running._log_line", broken)
    result = CliRunner().invoke(app, ["run", "write it"])
    assert result.exit_code == 1
    assert "ValueError: cannot draw this" in result.output
    assert "Traceback" not in result.output
    with sqlite3.connect(os.environ["FOREMAN_DB"]) as db:
        [(run_id, status, error)] = db.execute("SELECT run_id, status, error FROM runs").fetchall()
        [(last,)] = db.execute(
            "SELECT type FROM events WHERE run_id = ? ORDER BY seq DESC LIMIT 1", (run_id,)
        ).fetchall()
    assert status == "failed" and "cannot draw this" in error and last == "run_finished"


def test_a_retried_call_is_one_plain_log_line_in_a_pipe(capsys: pytest.CaptureFixture) -> None:
    from foreman.cli.running import _log_line
    from foreman.events import CallRetried

    _log_line(CallRetried(run_id="r", purpose="plan", attempt=1, error="429", delay=0.5))
    _log_line(
        CallRetried(run_id="r", purpose="review", task_id="t[/b]", attempt=1, error="", delay=0)
    )
    assert capsys.readouterr().err.splitlines() == [
        "call_retried plan",
        "call_retried review t[/b]",
    ]


def _piped(foreman, *flags: str) -> tuple[Any, subprocess.Popen[str]]:
    """A two-task run started with its stdout and stderr on pipes the test reads."""
    f = foreman(
        {"plan": plan(("t1", "researcher", []), ("t2", "writer", ["t1"])), "latency": {"do t1": 1}}
    )
    process = subprocess.Popen(
        f.command("run", *flags, "write it"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    f.children.append(process)
    assert process.stdout is not None and process.stderr is not None
    return f, process


def test_a_reader_that_leaves_early_does_not_fail_the_run(foreman) -> None:
    f, process = _piped(foreman, "--json")
    assert '"run_started"' in process.stdout.readline()
    process.stdout.close()  # `| head -1`
    assert process.wait(timeout=DEADLINE) == 0
    assert "BrokenPipe" not in process.stderr.read()
    [(status,)] = f.query("SELECT status FROM runs")
    assert status == "succeeded"


@pytest.mark.parametrize("gone", ["stdout", "stderr"])
def test_a_reader_that_leaves_early_does_not_stop_a_run_shown_as_lines(foreman, gone) -> None:
    """Without --json: stderr's reader leaving (`2>&1 >/dev/null | head -1`) stopped the
    run as interrupted (the console exited inside an event handler); stdout's reader
    leaving before the answer failed the command with a BrokenPipeError."""
    f, process = _piped(foreman)
    if gone == "stderr":
        assert "run_started" in process.stderr.readline()
        process.stderr.close()
        assert process.wait(timeout=DEADLINE) == 0
    else:
        process.stdout.close()
        assert process.wait(timeout=DEADLINE) == 0
        assert "BrokenPipe" not in process.stderr.read()
    [(status,)] = f.query("SELECT status FROM runs")
    assert status == "succeeded"
