"""``foreman show RUN --calls`` and ``foreman show RUN TASK`` over real runs' ledgers, and
``run --no-record-prompts`` (kept by ``resume``); the docs' Python snippets run as shown."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import processes
from books_run import PRICES, books_run
from foreman.cli import app
from foreman.cli.calls import money
from foreman.ledger.books import Books
from foreman.models.base import Usage
from foreman.store.sqlite import SQLiteStore
from foreman.testing import ScriptedModel
from helpers import Script, plan_of, task

runner = CliRunner()
TESTS = Path(__file__).parent


def store() -> SQLiteStore:
    return SQLiteStore(os.environ["FOREMAN_DB"])


def recorded() -> tuple[str, dict]:
    """The scenario run (see books_run) in the CLI's store: its id and, per task, its
    ledger records with prompts; and the run record under ``run``."""

    async def record() -> tuple[str, dict]:
        runs = store()
        try:
            result, _ = await books_run(runs)
            calls = await runs.list_calls(run_id=result.run_id, with_prompts=True)
            found: dict = {"run": await runs.get_run(result.run_id), "all": calls}
            for task_id in ("t1", "t2"):
                found[task_id] = [c for c in calls if c.task_id == task_id]
            return result.run_id, found
        finally:
            await runs.aclose()

    return asyncio.run(record())


@pytest.fixture(autouse=True)
def priced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOREMAN_PRICES", PRICES)


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch):
    """Every model name the CLI loads resolves to one ScriptedModel of the given script."""
    holder: dict[str, ScriptedModel] = {}

    def use(script) -> ScriptedModel:
        holder["model"] = ScriptedModel(script, name="boss")
        return holder["model"]

    monkeypatch.setattr("foreman.models.pool.load_model", lambda name=None: holder["model"])
    monkeypatch.delenv("FOREMAN_MODEL", raising=False)
    return use


def show(*args: str) -> str:
    result = runner.invoke(app, ["show", *args], terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.output


# --- show RUN --calls ----------------------------------------------------------------------


def test_calls_lists_every_attempt_in_order_with_errors_and_the_total() -> None:
    run_id, found = recorded()
    output = show(run_id, "--calls")
    lines = output.splitlines()
    assert max(len(line) for line in lines) <= 80
    at = [n for n, line in enumerate(lines) if re.match(r"^\s*\d+\s+\+", line)]
    rows = [lines[n].split() for n in at]
    models = [lines[n + 1].strip() for n in at]  # under the worker, on the row's 2nd line
    assert [row[0] for row in rows] == [str(n) for n in range(1, 13)]
    # number, offset, what for, worker, try, status
    assert rows[0][2:6] == ["plan", "-", "1", "error"] and models[0] == "boss"  # not a plan
    assert rows[1][2:6] == ["plan", "-", "2", "ok"]
    assert [row[2:6] for row in rows[2:6]] == [
        ["t1", "researcher", "1", "error"],
        ["t1", "researcher", "2", "error"],
        ["t1", "researcher", "3", "error"],
        ["t1", "researcher", "4", "ok"],
    ]
    assert models[2:6] == ["primary", "primary", "primary", "backup"]
    assert rows[6][2:5] == ["t1", "review", "judge"]
    assert rows[-1][2] == "synthesis"
    assert [line for line in lines if "ProviderServerError: on fire" in line] == [
        "#3 t1 (primary): ProviderServerError: on fire",
        "#4 t1 (primary): ProviderServerError: on fire",
        "#5 t1 (primary): ProviderServerError: on fire",
    ]
    run = found["run"]
    assert (
        f"Total: 12 call(s), {run.usage.input_tokens:,} in / {run.usage.output_tokens:,} out "
        f"tokens, {money(run.cost_usd)}" in lines
    )


def test_calls_json_is_show_json_plus_the_ledger_without_prompts() -> None:
    run_id, found = recorded()
    plain = json.loads(show(run_id, "--json"))
    shown = json.loads(show(run_id, "--calls", "--json"))
    ledger = shown.pop("ledger")
    assert shown.pop("tool_calls") == []  # its workers have no tools
    assert shown == plain
    assert len(ledger) == plain["calls"] == 12
    assert [call["call_id"] for call in ledger] == [c.call_id for c in found["all"]]
    assert all("prompt" not in call and "output" not in call for call in ledger)
    assert sum(call["cost_usd"] for call in ledger) == pytest.approx(plain["cost_usd"])
    spent = sum((Usage(**call["usage"]) for call in ledger), Usage())
    assert spent.model_dump() == plain["usage"]


def test_plain_show_gives_the_run_total_cost() -> None:
    run_id, found = recorded()
    output = show(run_id)
    run = found["run"]
    assert f"{run.usage.total_tokens:,} tokens · {money(run.cost_usd)}" in output
    assert f"Total: 12 call(s), {run.usage.input_tokens:,} in" in output


# --- show RUN TASK -------------------------------------------------------------------------


def test_a_task_shows_what_each_call_was_sent_and_said_and_what_it_cost() -> None:
    run_id, found = recorded()
    output = show(run_id, "t2")
    calls = found["t2"]
    assert [c.purpose.value for c in calls] == ["task", "review", "task", "review"]
    assert output.startswith(f"{run_id} / t2 · writer · succeeded")
    assert "Instructions\ndo t2\n" in output
    headers = re.findall(r"^Call \d: .*$", output, re.MULTILINE)
    assert [h.split(" · ")[0] for h in headers] == [
        "Call 1: t2",
        "Call 2: t2 review",
        "Call 3: t2",
        "Call 4: t2 review",
    ]
    assert output.count("System\nYou are the writer worker.") == 2
    assert output.count("System\nYou are the judge worker.") == 2
    assert '"reviewer_feedback": ["too short"]' in " ".join(output.split())  # the revision
    for call in calls:
        assert call.output and call.output in output
        assert f"{call.usage.input_tokens:,} in / {call.usage.output_tokens:,} out" in output
    books = Books.of(calls)
    assert f"Task t2: 4 call(s), {books.usage.input_tokens:,} in" in output
    assert output.rstrip().endswith(money(books.cost_usd))


def test_a_task_with_failed_calls_shows_their_errors() -> None:
    run_id, _ = recorded()
    output = show(run_id, "t1")
    assert output.count("ProviderServerError: on fire") == 3
    assert "Call 4: t1 · try 4 · researcher · backup" in output


def test_a_task_as_json_has_its_calls_with_prompts_and_its_books() -> None:
    run_id, found = recorded()
    shown = json.loads(show(run_id, "t1", "--json"))
    calls = found["t1"]
    assert shown["task"]["id"] == "t1" and shown["result"]["model"] == "backup"
    assert shown["prompts_recorded"] is True
    assert [c["call_id"] for c in shown["calls"]] == [c.call_id for c in calls]
    assert shown["calls"][3]["prompt"]["system"] == "You are the researcher worker."
    books = Books.of(calls)
    assert shown["usage"] == books.usage.model_dump()
    assert shown["cost_usd"] == pytest.approx(books.cost_usd)


def test_an_unknown_task_is_one_clear_line() -> None:
    run_id, _ = recorded()
    result = runner.invoke(app, ["show", run_id, "t9"])
    assert result.exit_code == 1
    assert result.output == f"error: Run {run_id} has no task 't9'; its tasks: t1, t2.\n"


MARKUP = "[bold red]LOUD[/bold red] [link=https://x]y[/link] [/]"


def test_prompts_outputs_and_errors_are_printed_as_text_never_markup(scripted) -> None:
    plan = plan_of(task("t1", instructions=f"echo {MARKUP}"), task("t2", "writer"))
    from foreman.errors import ModelError

    scripted(Script(plan, tasks={f"echo {MARKUP}": MARKUP, "do t2": ModelError(MARKUP)}))
    assert runner.invoke(app, ["run", "x"]).exit_code == 3  # t2 failed: a partial answer

    t1 = show("last", "t1")
    assert t1.count(MARKUP) >= 3  # the instructions, the message sent, the output
    calls = show("last", "--calls")
    assert f"t2 (boss): ModelError: {MARKUP}" in calls
    assert MARKUP in show("last", "t2")


# --- --no-record-prompts -------------------------------------------------------------------


TEAM = (
    "include_defaults: true\nworkers:\n  - name: writer\n    description: Writes.\n"
    "    system_prompt: You write.\n    risk: medium\n"
)


def test_no_record_prompts_keeps_the_books_but_no_text_and_resume_keeps_it_so(
    scripted, tmp_path: Path
) -> None:
    team = tmp_path / "team.yaml"
    team.write_text(TEAM)
    scripted(Script(plan_of(task("t1"), task("t2", "writer", "t1")), synthesis="FINAL"))
    started = runner.invoke(app, ["run", "x", "--team", str(team), "--no-record-prompts"])
    assert started.exit_code == 5, started.output  # t2 waits for approval
    assert runner.invoke(app, ["approve", "last", "t2"]).exit_code == 0
    resumed = runner.invoke(app, ["resume", "last"])
    assert resumed.exit_code == 0, resumed.output

    async def ledger():
        runs = store()
        try:
            run_id = await runs.resolve_run("last")
            return await runs.get_run(run_id), await runs.list_calls(
                run_id=run_id, with_prompts=True
            )
        finally:
            await runs.aclose()

    run, calls = asyncio.run(ledger())
    assert run.settings["record_prompts"] is False
    assert {c.task_id for c in calls} >= {"t1", "t2"}  # t2 ran in the resumed execution
    assert all(c.prompt is None and c.output is None for c in calls)
    assert all(c.usage.total_tokens for c in calls)  # the books are kept

    output = show("last", "t2")
    assert "Prompts and outputs were not recorded for this run" in output
    assert "System" not in output and "Output" not in output
    assert json.loads(show("last", "t2", "--json"))["prompts_recorded"] is False


def test_prompts_are_recorded_by_default(scripted) -> None:
    scripted(Script(plan_of(task("t1")), synthesis="FINAL"))
    assert runner.invoke(app, ["run", "x"]).exit_code == 0
    output = show("last", "t1")
    assert "not recorded" not in output
    assert "User\n" in output and "Output\nout:do t1" in output


# --- the docs --------------------------------------------------------------------------------


FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


@pytest.mark.parametrize("number", [0, 1])
def test_the_ledger_docs_python_snippets_run_as_shown(number: int, tmp_path: Path) -> None:
    snippets = FENCE.findall((TESTS.parent / "docs" / "ledger.md").read_text())
    assert len(snippets) == 2
    path = tmp_path / "snippet.py"
    path.write_text(snippets[number])
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env |= {"FOREMAN_DB": str(tmp_path / "runs.db"), "HOME": str(tmp_path)}
    runner_script = str(TESTS / "test_readme.py")
    done = processes.run([sys.executable, runner_script, str(path)], timeout=120, env=env)
    assert done.returncode == 0, f"{snippets[number]}\n--- stderr ---\n{done.stderr}"
