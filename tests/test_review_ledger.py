"""Hostile review of the call ledger: books across odd paths, old stores, doctor.

Each test is a defect found by trying to break the ledger; it failed before its fix.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from pydantic import BaseModel
from rich.console import Console
from typer.testing import CliRunner

from foreman import Orchestrator
from foreman.cli import app
from foreman.errors import ConfigError, ModelError
from foreman.ledger.books import Books
from foreman.ledger.records import CallRecord, CallStatus
from foreman.models.base import Usage
from foreman.store.base import RunSummary
from foreman.store.memory import MemoryStore
from foreman.store.sqlite import SQLiteStore
from foreman.testing import ScriptedModel
from foreman.workers import Registry
from helpers import NO_DELAY, Script, latency_by_instructions, plan_of, task, worker

PLAN = plan_of(task("t1", "researcher"), task("t2", "writer"))


def failing_once() -> object:
    """t1's answer: a refusal the first time, then an answer."""
    calls = {"n": 0}

    def answer(_request: object) -> object:
        calls["n"] += 1
        return ModelError("400 bad request") if calls["n"] == 1 else "ok"

    return answer


def aborting_team() -> Registry:
    return Registry([worker("researcher", on_failure="abort"), worker("writer")])


def make_legacy(path: Path) -> None:
    """The file as a foreman from before the ledger (schema 2) would have left it."""
    db = sqlite3.connect(path)
    db.execute("DROP TABLE calls")
    db.execute("ALTER TABLE plans DROP COLUMN reason")  # migration 5's columns
    db.execute("ALTER TABLE plans DROP COLUMN changes")
    db.execute("DROP INDEX runs_by_parent")  # nested runs (migration 6) came later still
    db.execute("ALTER TABLE runs DROP COLUMN parent_run_id")
    db.execute("ALTER TABLE runs DROP COLUMN parent_task_id")
    db.execute("DROP TABLE tool_turns")  # the tool loops' journal (migration 7)
    db.execute("DROP TABLE tool_calls")
    db.execute("DROP TABLE memories")  # memory (migration 8)
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()


async def test_resuming_a_run_stored_before_the_ledger_keeps_what_it_spent(tmp_path):
    path = tmp_path / "old.db"
    model = ScriptedModel(Script(PLAN, tasks={"do t1": failing_once()}), name="boss")
    async with Orchestrator(
        aborting_team(), model=model, store=SQLiteStore(path), retry=NO_DELAY
    ) as orchestrator:
        aborted = await orchestrator.run("q")
    assert aborted.status.value == "aborted" and aborted.usage.total_tokens
    make_legacy(path)
    store = SQLiteStore(path)
    async with Orchestrator(aborting_team(), model=model, store=store, retry=NO_DELAY) as again:
        before = (await store.get_run(aborted.run_id)).usage
        assert before == aborted.usage  # read the old way: the run's own totals
        resumed = await again.resume(aborted.run_id)
        stored = await store.get_run(aborted.run_id)
        calls = await store.list_calls(run_id=aborted.run_id)
    new = Books.of(call for call in calls if call.purpose.value != "legacy").usage
    assert new.total_tokens  # t1 and synthesis ran again
    assert resumed.usage == before + new
    assert stored.usage == resumed.usage  # not only the new calls
    assert Books.of(calls).usage == stored.usage


async def test_replaying_a_task_of_a_run_stored_before_the_ledger_adds_to_its_books(tmp_path):
    path = tmp_path / "old.db"
    model = ScriptedModel(Script(PLAN), name="boss")
    team = Registry([worker("researcher"), worker("writer")])
    async with Orchestrator(team, model=model, store=SQLiteStore(path)) as orchestrator:
        done = await orchestrator.run("q")
    make_legacy(path)
    store = SQLiteStore(path)
    async with Orchestrator(team, model=model, store=store) as again:
        replayed = await again.replay(done.run_id, "t2")
        stored = await store.get_run(done.run_id)
        calls = await store.list_calls(run_id=done.run_id)
    assert replayed.usage.total_tokens
    assert stored.usage == done.usage + replayed.usage
    (carried,) = [call for call in calls if call.purpose == "legacy"]
    assert carried.usage == done.usage and not carried.timed  # no latency to count


async def test_doctor_reports_a_damaged_ledger_row(tmp_path):
    path = tmp_path / "runs.db"
    model = ScriptedModel(Script(PLAN), name="boss")
    team = Registry([worker("researcher"), worker("writer")])
    async with Orchestrator(team, model=model, store=SQLiteStore(path)) as orchestrator:
        done = await orchestrator.run("q")
    db = sqlite3.connect(path)
    db.execute("UPDATE calls SET status = 'bogus' WHERE purpose = 'synthesis'")
    db.execute("UPDATE calls SET prompt = '{not json' WHERE purpose = 'plan'")
    db.commit()
    db.close()
    store = SQLiteStore(path)
    try:
        problems = await store.check()
    finally:
        await store.aclose()
    assert len(problems) == 2, problems
    assert all(done.run_id in problem and "call" in problem for problem in problems)


async def test_attempts_count_on_across_a_resume():
    """A task's call cut short by Ctrl-C, then made again by resume: tries 1 and 2, not 1
    and 1 (``show RUN --calls`` would show two first tries)."""
    orchestrator, run = await _cut_short_in_t2()
    await orchestrator.resume(run.run_id)
    calls = await orchestrator.store.list_calls(run_id=run.run_id, task_id="t2")
    assert [(c.status, c.attempt) for c in calls] == [
        (CallStatus.interrupted, 1),
        (CallStatus.ok, 2),
    ]


async def test_replays_count_their_attempts_on():
    model = ScriptedModel(Script(PLAN), name="boss")
    team = Registry([worker("researcher"), worker("writer")])
    orchestrator = Orchestrator(team, model=model)
    done = await orchestrator.run("q")
    await orchestrator.replay(done.run_id, "t1")
    await orchestrator.replay(done.run_id, "t1")
    calls = await orchestrator.store.list_calls(run_id=done.run_id, task_id="t1")
    assert [(c.purpose.value, c.attempt) for c in calls] == [
        ("task", 1),
        ("replay", 1),
        ("replay", 2),
    ]


async def test_a_replay_cut_short_is_still_on_the_books():
    """Ctrl-C during ``foreman replay``: the call was paid for (its input at least)."""
    hang = {"on": False}
    model = ScriptedModel(
        Script(PLAN), latency=lambda _request: 30.0 if hang["on"] else 0.0, name="boss"
    )
    team = Registry([worker("researcher"), worker("writer")])
    orchestrator = Orchestrator(team, model=model)
    done = await orchestrator.run("q")
    hang["on"] = True
    job = asyncio.ensure_future(orchestrator.replay(done.run_id, "t1"))
    for _ in range(100):
        if len(model.requests) > 4:
            break
        await asyncio.sleep(0.01)
    job.cancel()
    await asyncio.gather(job, return_exceptions=True)
    replays = [
        call
        for call in await orchestrator.store.list_calls(run_id=done.run_id)
        if call.purpose.value == "replay"
    ]
    assert [(c.status, c.estimated) for c in replays] == [(CallStatus.interrupted, True)]
    stored = await orchestrator.store.get_run(done.run_id)
    assert stored.usage == done.usage + replays[0].usage
    assert replays[0].usage.input_tokens > 0


async def test_no_record_prompts_keeps_no_answer_text_in_an_error():
    """A structured answer that did not parse: its error quotes the answer, which a run
    made with ``record_prompts=False`` must not keep in the ledger."""

    class Out(BaseModel):
        x: int

    model = ScriptedModel(
        Script(plan_of(task("t1")), tasks={"do t1": '{"x": "SECRET-NAME"}'}), name="boss"
    )
    team = Registry([worker("researcher", output_schema=Out)])
    orchestrator = Orchestrator(team, model=model, retry=NO_DELAY, record_prompts=False)
    done = await orchestrator.run("q")
    calls = await orchestrator.store.list_calls(run_id=done.run_id, with_prompts=True)
    failed = [call for call in calls if call.failed]
    assert len(failed) == 3
    assert all(call.error_type == "OutputValidationError" for call in failed)
    assert not any("SECRET" in call.model_dump_json() for call in calls)


def test_stats_with_bad_prices_says_so_in_one_line(tmp_path, monkeypatch):
    """Every other command turns a bad FOREMAN_PRICES into one error line; stats printed
    a traceback (its calls are priced after the store is read)."""
    path = tmp_path / "runs.db"
    model = ScriptedModel(Script(PLAN), name="boss")
    team = Registry([worker("researcher"), worker("writer")])

    async def go() -> None:
        async with Orchestrator(team, model=model, store=SQLiteStore(path)) as orchestrator:
            await orchestrator.run("q")

    asyncio.run(go())
    monkeypatch.setenv("FOREMAN_PRICES", '{"boss": [-1, 1]}')
    for args in (["stats"], ["stats", "--json"]):
        result = CliRunner().invoke(app, [*args, "--db", str(path)])
        assert result.exit_code == 1, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert "FOREMAN_PRICES is invalid" in result.output
        assert "Traceback" not in result.output


def test_a_bad_foreman_prices_stops_a_run_before_it_spends(tmp_path, monkeypatch):
    """Found only when the planner's answer was priced, a bad FOREMAN_PRICES lost that
    paid call (left ``started``, estimated) and the run read ``crashed``, not ``failed``."""
    monkeypatch.setenv("FOREMAN_PRICES", '{"boss": [-1, 1]}')
    model = ScriptedModel(Script(PLAN), name="boss")
    path = tmp_path / "runs.db"
    with pytest.raises(ConfigError, match="FOREMAN_PRICES is invalid"):
        Orchestrator(
            Registry([worker("researcher"), worker("writer")]), model=model, store=SQLiteStore(path)
        )
    assert model.requests == []


def test_a_call_cut_short_by_a_crash_has_no_latency_to_count():
    """Read back as ``interrupted``, a crashed call's latency is 0.0 because it was never
    measured: it must not pull stats' p50/p95 down nor show as ``0.00s``."""
    from foreman.cli.calls import calls_table
    from foreman.ledger.stats import summarise
    from foreman.store.base import RunRecord, settled_as_read

    def record(call_id: str, **fields: object) -> CallRecord:
        return CallRecord(
            run_id="r", call_id=call_id, parent="task:t1", purpose="task", task_id="t1",
            worker="w", provider="unknown", model="m", started_at=100.0, **fields,
        )  # fmt: skip

    answered = [record(f"c{n}", status="ok", latency=2.0) for n in range(3)]
    crashed = settled_as_read(record("x", usage=Usage(input_tokens=9), estimated=True), "crashed")
    assert crashed.status is CallStatus.interrupted and crashed.latency == 0.0
    stats = summarise([*answered, crashed])
    assert (stats.latency_p50_s, stats.latency_p95_s) == (2.0, 2.0)
    assert stats.failed_calls == 1
    console = Console(width=100, record=True)
    console.print(calls_table(RunRecord(run_id="r", request="q", created_at=100.0), [crashed]))
    assert "0.00s" not in console.export_text()


class StuckCheckpoint(MemoryStore):
    """A store whose checkpoint of t2 never gets to run (a write queued behind others
    when the run is cancelled: ``run_in_executor`` drops a job that has not started)."""

    async def save_task(self, run_id, result, events=(), calls=()):
        if result.task_id == "t2":
            await asyncio.Event().wait()
        await super().save_task(run_id, result, events, calls=calls)


async def test_calls_of_a_checkpoint_cut_short_by_an_abort_are_still_written():
    """t2 answered and its checkpoint was queued when t1 aborted the run: the checkpoint
    was cancelled and took t2's call with it, so the stored books were short of what the
    run returned (seen as a flaky failure of the books invariant)."""
    model = ScriptedModel(
        Script(PLAN, tasks={"do t1": ModelError("400 bad request")}),
        latency=latency_by_instructions({"do t1": 0.2}),
        name="boss",
    )
    store = StuckCheckpoint()
    orchestrator = Orchestrator(aborting_team(), model=model, store=store, retry=NO_DELAY)
    done = await orchestrator.run("q")
    assert done.status.value == "aborted"
    calls = await store.list_calls(run_id=done.run_id)
    assert [c.task_id for c in calls if c.status is CallStatus.ok] == [None, "t2"]
    assert Books.of(calls).usage == done.usage


def test_show_of_a_run_stored_before_the_ledger_does_not_claim_it_cost_nothing(
    tmp_path, monkeypatch
):
    """``show RUN TASK`` summed the task's (absent) ledger rows: '0 call(s), 0 in / 0 out
    tokens, $0.0000' for a task that spent tokens; ``--json`` said cost_usd 0.0."""
    monkeypatch.setenv("FOREMAN_PRICES", '{"boss": [1, 2]}')
    path = tmp_path / "old.db"
    model = ScriptedModel(Script(PLAN), name="boss")
    team = Registry([worker("researcher"), worker("writer")])

    async def go():
        async with Orchestrator(team, model=model, store=SQLiteStore(path)) as orchestrator:
            return await orchestrator.run("q")

    done = asyncio.run(go())
    make_legacy(path)
    spent = done.tasks["t1"].usage
    result = CliRunner().invoke(app, ["show", done.run_id, "t1", "--json", "--db", str(path)])
    shown = json.loads(result.output)
    assert shown["usage"] == spent.model_dump(mode="json")
    assert shown["cost_usd"] == pytest.approx((spent.input_tokens + 2 * spent.output_tokens) / 1e6)
    for args in (["t1"], ["--calls"]):
        result = CliRunner().invoke(app, ["show", done.run_id, *args, "--db", str(path)])
        assert "before the call ledger" in result.output
        assert "0 call(s)" not in result.output and "$0.0000" not in result.output


def test_a_tiny_cost_is_not_shown_as_free():
    from foreman.cli.calls import money

    assert money(0.00002) == "<$0.0001"
    assert (money(0.0), money(0.00012), money(None)) == ("$0.0000", "$0.0001", "unknown")


async def test_a_resumed_task_counts_its_calls_from_before_the_resume():
    """t2's first call was cut short by Ctrl-C (on the books, estimated); resumed, t2's
    result said only what its new call cost, so the tasks no longer added up to the run's
    books, and ``TaskResult.usage`` disagreed with ``show RUN TASK``."""
    orchestrator, run = await _cut_short_in_t2()
    events = []
    resumed = await orchestrator.resume(run.run_id, on_event=events.append)
    t2_calls = await orchestrator.store.list_calls(run_id=run.run_id, task_id="t2")
    assert len(t2_calls) == 2
    assert resumed.tasks["t2"].usage == Books.of(t2_calls).usage
    (finished,) = [e for e in events if e.type == "task_finished" and e.task_id == "t2"]
    assert finished.usage == resumed.tasks["t2"].usage


async def test_a_plan_the_planner_got_wrong_is_a_failed_call():
    """Three plans that do not validate fail the run, yet their calls read ``ok``:
    ``show RUN --calls`` listed no error and ``stats`` a 0% failure rate for planning."""
    model = ScriptedModel(Script(["not a plan", "still not", PLAN]), name="boss")
    team = Registry([worker("researcher"), worker("writer")])
    orchestrator = Orchestrator(team, model=model, retry=NO_DELAY)
    done = await orchestrator.run("q")
    plans = [
        c for c in await orchestrator.store.list_calls(run_id=done.run_id) if c.purpose == "plan"
    ]
    assert [(c.status.value, c.error_type) for c in plans] == [
        ("error", "PlanRejected"),
        ("error", "PlanRejected"),
        ("ok", None),
    ]
    assert all(c.usage.output_tokens for c in plans)  # answered: still on the books
    assert "JSON" in plans[0].error


def test_show_task_prints_no_terminal_escape_from_model_text(tmp_path):
    """A model's output (or a prompt) holding ESC sequences reached the terminal as is:
    ``show RUN TASK`` could clear the screen, retitle it or write the clipboard (OSC 52)."""
    path = tmp_path / "runs.db"
    hostile = "ok \x1b[2J\x1b]52;c;cHduZWQ=\x07 \x9b31m done"
    model = ScriptedModel(Script(plan_of(task("t1")), tasks={"do t1": hostile}), name="boss")

    async def go():
        async with Orchestrator(
            Registry([worker("researcher")]), model=model, store=SQLiteStore(path)
        ) as orchestrator:
            return await orchestrator.run("q \x1b[31m")

    done = asyncio.run(go())
    for args in (["t1"], ["--calls"]):
        result = CliRunner().invoke(app, ["show", done.run_id, *args, "--db", str(path)])
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output and "\x9b" not in result.output
    shown = CliRunner().invoke(app, ["show", done.run_id, "t1", "--db", str(path)]).output
    assert "ok \\x1b[2J\\x1b]52;c;cHduZWQ=\\x07 \\x9b31m done" in shown  # visible, not obeyed


async def test_a_call_that_raised_a_bug_says_which_in_the_ledger():
    """A client bug (not a ModelError) was recorded as 'the call was stopped before it
    answered', with no error type: ``show --calls`` hid why the run failed."""
    model = ScriptedModel(
        Script(PLAN, tasks={"do t1": lambda _r: 1 / 0}), name="boss"
    )  # the script raising ZeroDivisionError stands for a bug in a model client
    team = Registry([worker("researcher"), worker("writer")])
    orchestrator = Orchestrator(team, model=model, retry=NO_DELAY)
    with pytest.raises(ZeroDivisionError):
        await orchestrator.run("q")
    (run,) = await orchestrator.store.list_runs()
    (call,) = await orchestrator.store.list_calls(run_id=run.run_id, task_id="t1")
    assert (call.status, call.error_type) == (CallStatus.interrupted, "ZeroDivisionError")
    assert call.estimated and call.usage.input_tokens > 0  # it may have been billed


def test_stats_with_an_empty_run_is_a_usage_error_not_every_run(tmp_path):
    """``foreman stats --run "$RUN"`` with RUN unset printed the stats of every run."""
    result = CliRunner().invoke(app, ["stats", "--run", "", "--db", str(tmp_path / "x.db")])
    assert result.exit_code == 2
    assert "--run" in result.output


async def _cut_short_in_t2() -> tuple[Orchestrator, RunSummary]:
    """A run cancelled (as Ctrl-C does) while t2's call is in flight; its model answers at
    once from then on, so a resume finishes it."""
    model = ScriptedModel(
        Script(PLAN), latency=latency_by_instructions({"do t2": 30.0}), name="boss"
    )
    team = Registry([worker("researcher"), worker("writer")])
    orchestrator = Orchestrator(team, model=model, retry=NO_DELAY)
    started = asyncio.Event()
    job = asyncio.ensure_future(
        orchestrator.run(
            "q", on_event=lambda e: e.type == "task_started" and e.task_id == "t2" and started.set()
        )
    )
    await asyncio.wait_for(started.wait(), 10)
    await asyncio.sleep(0.05)
    job.cancel()
    await asyncio.gather(job, return_exceptions=True)
    (run,) = await orchestrator.store.list_runs()
    model._latency = 0.0
    return orchestrator, run
