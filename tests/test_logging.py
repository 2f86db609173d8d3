"""Logs: one INFO line per event and per model call under the ``foreman`` logger, prompts
and outputs at DEBUG, silence unless logging is configured, and the CLI's -v / -vv /
--log-file."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from foreman import Orchestrator
from foreman.cli import app
from foreman.errors import RateLimitError
from foreman.events import EVENT_ADAPTER
from foreman.testing import ScriptedModel
from foreman.tracing import LoggingObserver
from helpers import Script, plan_of, task, worker

TEAM = [worker("researcher"), worker("writer")]
PLAN = plan_of(task("t1"), task("t2", "writer", "t1"))
runner = CliRunner()


async def run_logged(script: Script) -> tuple[Orchestrator, list, str]:
    orchestrator = Orchestrator(TEAM, model=ScriptedModel(script))
    events: list = []
    result = await orchestrator.run("Explain [bold]x[/bold]", on_event=events.append)
    return orchestrator, events, result.run_id


def lines(caplog: pytest.LogCaptureFixture, name: str, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == name and r.levelno == level]


async def test_one_info_line_per_event_with_its_run_and_task(caplog) -> None:
    caplog.set_level(logging.INFO, logger="foreman")
    _, events, run_id = await run_logged(Script(PLAN))

    logged = lines(caplog, "foreman.events", logging.INFO)
    assert [r.getMessage().split()[0] for r in logged] == [e.type for e in events]
    for record, event in zip(logged, events, strict=True):
        message = record.getMessage()
        assert f" run={run_id}" in message
        assert record.run_id == run_id and record.event == event.type
        if task_id := getattr(event, "task_id", None):
            assert f" task={task_id}" in message and record.task_id == task_id
    finished = next(r.getMessage() for r in logged if r.event == "run_finished")
    assert "status=succeeded" in finished and "calls=4" in finished
    assert not lines(caplog, "foreman.events", logging.DEBUG)  # INFO only


async def test_one_info_line_per_call_attempt_with_its_books(caplog) -> None:
    caplog.set_level(logging.INFO, logger="foreman")
    script = Script(PLAN, tasks={"do t1": [RateLimitError("slow down"), "fine"]})
    orchestrator, _, run_id = await run_logged(script)

    logged = [r.getMessage() for r in lines(caplog, "foreman.calls", logging.INFO)]
    calls = await orchestrator.store.list_calls(run_id=run_id)
    assert len(logged) == len(calls) == 5  # plan, t1 twice (a retry), t2, synthesis
    assert [re.search(r" call=(\w+)", line)[1] for line in logged] == [c.call_id for c in calls]
    failed, retried = (line for line in logged if "task=t1" in line)
    assert "purpose=task" in failed and "worker=researcher" in failed
    assert "status=error" in failed and "error_type=RateLimitError" in failed
    assert 'error="slow down"' in failed and "attempt=1" in failed
    assert "status=ok" in retried and "attempt=2" in retried
    for line, call in zip(logged, calls, strict=True):
        assert f"model={call.model}" in line and "cost_usd=unpriced" in line
        assert f"input_tokens={call.usage.input_tokens}" in line
        assert f"output_tokens={call.usage.output_tokens}" in line
        assert " latency=" in line
    assert "You are the researcher worker" not in "\n".join(logged)  # prompts: DEBUG only


async def test_a_replay_logs_its_calls(caplog) -> None:
    orchestrator, _, run_id = await run_logged(Script(PLAN))
    caplog.set_level(logging.INFO, logger="foreman")
    await orchestrator.replay(run_id, "t2")

    [line] = [r.getMessage() for r in lines(caplog, "foreman.calls", logging.INFO)]
    assert f"run={run_id} task=t2 worker=writer" in line
    assert "purpose=replay" in line and "status=ok" in line


async def test_debug_has_every_prompt_and_output(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="foreman")
    await run_logged(Script(PLAN, tasks={"do t2": "the writer's text"}))

    debug = [r.getMessage() for r in lines(caplog, "foreman.calls", logging.DEBUG)]
    prompt = next(line for line in debug if line.startswith("call.prompt") and "task=t2" in line)
    sent = json.loads(prompt.split(" prompt=", 1)[1])
    assert sent["system"] == "You are the writer worker."
    assert "out:do t1" in sent["messages"][0]["content"]  # t2 saw t1's output
    assert any(line.endswith('output="the writer\'s text"') for line in debug)
    outputs = [r.getMessage() for r in lines(caplog, "foreman.events", logging.DEBUG)]
    assert any(line.startswith("assembled.answer") and "FINAL" in line for line in outputs)


async def test_data_stays_on_one_line_and_never_becomes_markup_or_escapes(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="foreman")
    nasty = "line one\nfield=forged \x1b[31mred\x1b[0m [bold]x[/bold]\u2028end"
    await run_logged(Script(PLAN, tasks={"do t1": nasty}))

    messages = [r.getMessage() for r in caplog.records if r.name.startswith("foreman")]
    output = next(m for m in messages if m.startswith("call.output") and "task=t1" in m)
    assert json.loads(output.split(" output=", 1)[1]) == nasty  # quoted, so read back exactly
    for message in messages:
        assert "\n" not in message and "\x1b" not in message and "\u2028" not in message
        assert " field=forged" not in message


async def test_bidirectional_controls_are_spelled_out_in_log_lines(caplog) -> None:
    """U+202E in a request reordered how the line read in a terminal."""
    caplog.set_level(logging.INFO, logger="foreman")
    orchestrator = Orchestrator(TEAM, model=ScriptedModel(Script(PLAN)))
    await orchestrator.run("pay \u202eten\u202c dollars")
    [started] = [r.getMessage() for r in caplog.records if r.event == "run_started"]
    assert "\u202e" not in started and "\\u202e" in started


async def test_without_prompts_a_reviewers_words_stay_out_of_the_logs(caplog) -> None:
    """A reviewer's reasons are its model's text, as a prompt is: with record_prompts=False
    they were still in the INFO line of task_validated."""
    caplog.set_level(logging.INFO, logger="foreman")
    words = '{"approved": true, "reasons": ["secret-7781 looks right"]}'
    script = Script(PLAN, review=words)
    team = [*TEAM, worker("reviewer")]
    orchestrator = Orchestrator(
        team, model=ScriptedModel(script), validator="reviewer", record_prompts=False
    )
    await orchestrator.run("x")
    validated = [r.getMessage() for r in caplog.records if r.event == "task_validated"]
    assert validated and not any("secret-7781" in line for line in validated)


async def test_a_refused_plan_is_logged_as_the_books_have_it(caplog) -> None:
    """The planner's call answered, its plan was refused after: the ledger says error,
    PlanRejected, and so must its log line (it said status=ok)."""
    caplog.set_level(logging.INFO, logger="foreman")
    orchestrator, _, run_id = await run_logged(Script(["not a plan", PLAN]))
    logged = [r.getMessage() for r in caplog.records if r.event == "call" and "purpose=plan" in
              r.getMessage()]  # fmt: skip
    assert [("status=error" in line, "PlanRejected" in line) for line in logged] == [
        (True, True),
        (False, False),
    ]
    books = await orchestrator.store.list_calls(run_id=run_id)
    assert [c.status.value for c in books if c.purpose.value == "plan"] == ["error", "ok"]


async def test_budget_and_tool_lines_say_what_happened(caplog) -> None:
    from foreman import Budget

    caplog.set_level(logging.INFO, logger="foreman")
    orchestrator = Orchestrator(TEAM, model=ScriptedModel(Script(PLAN)), budget=Budget(max_calls=2))
    await orchestrator.run("x")
    [line] = [r.getMessage() for r in caplog.records if r.event == "budget_exceeded"]
    assert "limit=max_calls" in line and "used=2" in line and "allowed=2" in line


def test_silent_until_logging_is_configured() -> None:
    """A library logs nothing by itself: not even Python's last-resort stderr handler."""
    code = (
        f"import asyncio, sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from helpers import Script, plan_of, task\n"
        "from foreman import Orchestrator\n"
        "from foreman.errors import ModelError\n"
        "from foreman.testing import ScriptedModel\n"
        "script = Script(plan_of(task('t1')), tasks={'do t1': ModelError('refused')})\n"
        "o = Orchestrator(model=ScriptedModel(script))\n"
        "print(asyncio.run(o.run('x')).status.value)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "partial"
    assert done.stderr == ""
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("foreman").handlers)


def test_a_disabled_logger_reads_nothing_of_the_event() -> None:
    """Cheap when nobody listens: the observer returns before touching the event."""

    class Untouchable:
        def __getattr__(self, name: str) -> None:
            raise AssertionError(f"read {name} while logging is off")

    quiet = logging.getLogger("foreman.test-quiet")
    quiet.setLevel(logging.WARNING)
    observer = LoggingObserver(events=quiet, calls=quiet)
    observer.on_event(Untouchable())
    observer.on_call(Untouchable())  # type: ignore[arg-type]


def test_every_orchestrator_has_exactly_one_logging_observer() -> None:
    default = Orchestrator(TEAM, model=ScriptedModel([]))
    mine = LoggingObserver()
    given = Orchestrator(TEAM, model=ScriptedModel([]), observers=[mine])
    assert [type(o) for o in default.observers.observers] == [LoggingObserver]
    assert given.observers.observers == [mine]


# --- the CLI ---------------------------------------------------------------------------


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> None:
    model = ScriptedModel(Script(plan_of(task("t1", "researcher"))))
    monkeypatch.setattr("foreman.models.pool.load_model", lambda name=None: model)
    monkeypatch.delenv("FOREMAN_MODEL", raising=False)


def cli(*args: str, db: Path) -> tuple[int, str, str]:
    result = runner.invoke(app, [*args, "--db", str(db)])
    return result.exit_code, result.stdout, result.stderr


def test_cli_is_quiet_without_v(scripted, tmp_path: Path) -> None:
    code, stdout, stderr = cli("run", "hello", db=tmp_path / "r.db")
    assert code == 0 and stdout == "out:do t1\n"
    assert "foreman.events" not in stderr and "foreman.calls" not in stderr


def test_cli_v_logs_events_and_calls_to_stderr(scripted, tmp_path: Path) -> None:
    code, stdout, stderr = cli("-v", "run", "hello", "--json", db=tmp_path / "r.db")
    assert code == 0
    events = [EVENT_ADAPTER.validate_json(line) for line in stdout.splitlines()]  # stdout: JSON
    run_id = events[0].run_id
    logged = [line for line in stderr.splitlines() if " INFO foreman." in line]
    assert f"INFO foreman.events: run_started run={run_id} " in logged[0]
    assert sum(" INFO foreman.events: " in line for line in logged) == len(events)
    assert sum(" INFO foreman.calls: call " in line for line in logged) == 2  # plan, t1
    assert " DEBUG " not in stderr


def test_cli_vv_adds_prompts(scripted, tmp_path: Path) -> None:
    code, _, stderr = cli("-vv", "run", "hello", db=tmp_path / "r.db")
    assert code == 0
    assert "DEBUG foreman.calls: call.prompt " in stderr
    assert "DEBUG foreman.calls: call.output run=" in stderr and 'output="out:do t1"' in stderr


def test_cli_log_file_takes_the_log_off_stderr(scripted, tmp_path: Path) -> None:
    log = tmp_path / "foreman.log"
    code, stdout, stderr = cli("--log-file", str(log), "run", "hello", db=tmp_path / "r.db")
    assert code == 0 and stdout == "out:do t1\n"
    assert "foreman.events" not in stderr
    text = log.read_text()
    assert "INFO foreman.events: run_finished " in text and "status=succeeded" in text
    assert " DEBUG " not in text
    # The command's handlers are gone when it ends: the next command logs nowhere.
    assert [type(h) for h in logging.getLogger("foreman").handlers] == [logging.NullHandler]
    cli("run", "again", db=tmp_path / "r.db")
    assert text == log.read_text()


def test_cli_log_file_that_cannot_be_written_is_a_usage_error(scripted, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "foreman.log"
    code, _, stderr = cli("--log-file", str(missing), "runs", db=tmp_path / "r.db")
    assert code == 2 and "--log-file" in stderr and "cannot write" in stderr
