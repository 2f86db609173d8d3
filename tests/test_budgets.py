"""Budgets: at a limit no call starts, the run ends over_budget with what finished, and a
resume with a raised limit completes it. Every run's books equal its ledger."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from foreman import Budget, Orchestrator, RunStatus
from foreman.cli import app
from foreman.errors import BudgetExceededError, ConfigError
from foreman.events import EVENT_ADAPTER, BudgetExceeded, TaskStarted
from foreman.ledger.books import Books
from foreman.ledger.budget import BudgetMeter, executed_seconds, limit_in
from foreman.ledger.recorder import CallLedger
from foreman.ledger.records import CallPurpose, CallStatus
from foreman.models.base import Message, ModelRequest
from foreman.results import RunResult
from foreman.store.memory import MemoryStore
from foreman.store.sqlite import SQLiteStore
from foreman.testing import ScriptedModel
from foreman.workers.registry import Registry
from helpers import (
    Script,
    instructions_of,
    is_synthesis,
    latency_by_instructions,
    plan_of,
    task,
    worker,
    worker_requests,
)

TEAM = Registry([worker("researcher"), worker("writer")])
FAN = plan_of(task("t1"), task("t2"), task("t3"), task("t4", "writer", "t1"))
CHAIN = plan_of(task("t1"), task("t2", "writer", "t1"))


def orchestrator(model: ScriptedModel, budget: Budget | None, **options) -> Orchestrator:
    options.setdefault("concurrency", 1)
    return Orchestrator(TEAM, model=model, budget=budget, store=MemoryStore(), **options)


async def run(o: Orchestrator, plan=None, **kwargs) -> tuple[RunResult, list]:
    events: list = []
    async with asyncio.timeout(10):
        result = await o.run("q", plan=plan, on_event=events.append, **kwargs)
    await assert_books(o, result)
    return result, events


async def assert_books(o: Orchestrator, result: RunResult) -> None:
    """The run's books (result and stored record) are the sum of its ledger rows."""
    books = Books.of(await o.store.list_calls(run_id=result.run_id))
    record = await o.store.get_run(result.run_id)
    for booked in (result, record):
        assert (booked.usage, booked.calls, booked.cost_usd) == (
            books.usage,
            books.calls,
            books.cost_usd,
        )


def budget_events(events: list) -> list[BudgetExceeded]:
    return [event for event in events if isinstance(event, BudgetExceeded)]


# --- each limit ---------------------------------------------------------------------------


async def test_max_calls_stops_new_calls_and_keeps_what_finished() -> None:
    model = ScriptedModel(Script(FAN))
    result, events = await run(orchestrator(model, Budget(max_calls=3)))

    assert result.status is RunStatus.over_budget
    assert result.budget_limit == "max_calls"
    assert result.error == "budget exceeded: calls 3 >= max_calls 3"
    assert result.calls == 3 and len(model.requests) == 3  # the plan, t1, t2; no synthesis
    assert set(result.tasks) == {"t1", "t2"} and all(t.succeeded for t in result.tasks.values())
    assert {e.task_id for e in events if isinstance(e, TaskStarted)} == {"t1", "t2"}
    [event] = budget_events(events)
    assert (event.limit, event.used, event.allowed, event.on_limit) == ("max_calls", 3, 3, "finish")
    # assembled from what finished, without a model call: the rest says it did not run
    assert "out:do t1" in result.answer and "out:do t2" in result.answer
    assert "t3" in result.answer and "not run: budget exceeded" in result.answer
    assert not any(is_synthesis(request) for request in model.requests)
    assert events[-1].result.status is RunStatus.over_budget


async def test_max_tokens_counts_every_call_of_the_run() -> None:
    model = ScriptedModel(Script())
    result, events = await run(orchestrator(model, Budget(max_tokens=1)), plan=CHAIN)

    assert result.status is RunStatus.over_budget and result.budget_limit == "max_tokens"
    assert list(result.tasks) == ["t1"]
    [event] = budget_events(events)
    assert event.used == result.usage.total_tokens > 1 and event.allowed == 1
    assert result.error == f"budget exceeded: tokens {result.usage.total_tokens} >= max_tokens 1"


async def test_max_cost_usd_prices_each_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOREMAN_PRICES", json.dumps({"scripted": [10_000, 10_000]}))  # 1c/token
    model = ScriptedModel(Script())
    result, _ = await run(orchestrator(model, Budget(max_cost_usd=0.05)), plan=CHAIN)

    assert result.status is RunStatus.over_budget and result.budget_limit == "max_cost_usd"
    assert list(result.tasks) == ["t1"]
    assert result.cost_usd == pytest.approx(result.usage.total_tokens * 0.01)
    assert result.error == f"budget exceeded: cost ${result.cost_usd:.4f} >= max_cost_usd $0.05"
    assert limit_in(result.error) == "max_cost_usd"


def test_a_cost_limit_needs_a_price_for_every_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FOREMAN_PRICES", raising=False)
    with pytest.raises(ConfigError, match=r"max_cost_usd needs a price.*scripted"):
        orchestrator(ScriptedModel([]), Budget(max_cost_usd=1.0))
    orchestrator(ScriptedModel([]), Budget(max_tokens=10))  # tokens need no price


class FakeTimer:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def slow_by(timer: FakeTimer, seconds: float) -> Script:
    """Each worker call takes ``seconds`` on ``timer``."""

    def answer(request: ModelRequest) -> str:
        timer.now += seconds
        return f"out:{instructions_of(request)}"

    return Script(tasks={f"do t{n}": answer for n in range(1, 5)})


async def test_max_seconds_counts_wall_time_on_the_injected_timer() -> None:
    timer = FakeTimer()
    model = ScriptedModel(slow_by(timer, 10))
    o = orchestrator(model, Budget(max_seconds=15), timer=timer)
    result, _ = await run(o, plan=FAN)

    assert result.status is RunStatus.over_budget and result.budget_limit == "max_seconds"
    assert set(result.tasks) == {"t1", "t2"} and result.elapsed == 20
    assert result.error == "budget exceeded: time 20.0s >= max_seconds 15s"


async def test_time_of_earlier_executions_counts_and_time_paused_does_not() -> None:
    timer = FakeTimer()
    o = orchestrator(ScriptedModel(slow_by(timer, 10)), Budget(max_seconds=15), timer=timer)
    first, _ = await run(o, plan=FAN)
    timer.now += 3600  # an hour between the runs: paused, not executing

    resumed = await o.resume(first.run_id, budget=Budget(max_seconds=25))

    # 20 s before, one more task (30 s), then the limit: the paused hour counted for nothing
    assert resumed.status is RunStatus.over_budget and resumed.budget_limit == "max_seconds"
    assert set(resumed.tasks) == {"t1", "t2", "t3"}
    assert resumed.error == "budget exceeded: time 30.0s >= max_seconds 25s"


def test_executed_seconds_sums_executions_from_the_stored_events() -> None:
    events = [
        {"type": "run_started", "at": 100.0},
        {"type": "task_finished", "at": 104.0},
        {"type": "run_finished", "at": 105.0, "result": {"elapsed": 5.5}},
        {"type": "run_started", "at": 500.0},  # resumed much later, then interrupted
        {"type": "task_finished", "at": 502.0},
        {"type": "run_started", "at": 900.0},  # and a third time, died without a word
    ]
    assert executed_seconds(events) == 5.5 + 2.0 + 0.0


# --- finish or cancel ---------------------------------------------------------------------


def gated(slow: set[str], latency: float) -> ScriptedModel:
    """Tasks in ``slow`` answer after ``latency`` seconds, the rest at once."""
    return ScriptedModel(Script(), latency=latency_by_instructions(dict.fromkeys(slow, latency)))


async def test_finish_lets_running_calls_finish_and_starts_nothing_new() -> None:
    model = gated({"do t2", "do t3"}, 0.01)
    o = orchestrator(model, Budget(max_calls=3), concurrency=3)
    result, events = await run(o, plan=FAN)

    assert result.status is RunStatus.over_budget
    assert set(result.tasks) == {"t1", "t2", "t3"}  # t2 and t3 finished after the limit
    assert not worker_requests(model, "do t4")
    calls = await o.store.list_calls(run_id=result.run_id)
    assert [call.status for call in calls] == [CallStatus.ok] * 3
    assert budget_events(events)[0].on_limit == "finish"


async def test_cancel_cancels_running_calls_and_books_them_estimated() -> None:
    model = gated({"do t2", "do t3"}, 3600)
    o = orchestrator(model, Budget(max_calls=3, on_limit="cancel"), concurrency=3)
    result, events = await run(o, plan=FAN)

    assert result.status is RunStatus.over_budget and result.budget_limit == "max_calls"
    assert set(result.tasks) == {"t1"}
    calls = {c.task_id: c for c in await o.store.list_calls(run_id=result.run_id)}
    assert calls["t1"].status is CallStatus.ok
    for cut in ("t2", "t3"):
        assert calls[cut].status is CallStatus.cancelled and calls[cut].estimated
        assert calls[cut].usage.input_tokens > 0
    assert budget_events(events)[0].on_limit == "cancel"
    assert "out:do t1" in result.answer


async def test_cancel_at_the_time_limit_cancels_a_call_that_never_ends() -> None:
    model = gated({"do t1"}, 3600)
    o = orchestrator(model, Budget(max_seconds=0.05, on_limit="cancel"))
    result, _ = await run(o, plan=CHAIN)

    assert result.status is RunStatus.over_budget and result.budget_limit == "max_seconds"
    [call] = await o.store.list_calls(run_id=result.run_id)
    assert call.status is CallStatus.cancelled and result.answer is None


# --- planning and synthesis ---------------------------------------------------------------


async def test_a_limit_reached_while_planning_ends_over_budget_without_a_plan() -> None:
    model = ScriptedModel(Script(["not a plan", CHAIN]))
    result, events = await run(orchestrator(model, Budget(max_calls=1)))

    assert result.status is RunStatus.over_budget and result.plan is None
    assert result.answer is None and result.calls == 1
    assert len(budget_events(events)) == 1


async def test_a_limit_reached_before_synthesis_concatenates_and_resume_synthesises() -> None:
    model = ScriptedModel(Script(synthesis="THE ANSWER"))
    o = orchestrator(model, Budget(max_calls=2))
    result, _ = await run(o, plan=CHAIN)

    assert result.status is RunStatus.over_budget
    assert "out:do t1" in result.answer and "out:do t2" in result.answer
    assert (await o.store.get_run(result.run_id)).answer == result.answer

    resumed = await o.resume(result.run_id, budget=Budget(max_calls=3))
    assert resumed.status is RunStatus.succeeded and resumed.answer == "THE ANSWER"
    assert len(worker_requests(model)) == 2  # no task ran again
    await assert_books(o, resumed)


# --- resume -------------------------------------------------------------------------------


async def test_resume_with_a_raised_limit_completes_without_rerunning_finished_tasks() -> None:
    model = ScriptedModel(Script(FAN, synthesis="THE ANSWER"))
    o = orchestrator(model, Budget(max_calls=3))
    first, _ = await run(o)

    again = await o.resume(first.run_id)  # the same budget: still spent, no call starts
    assert again.status is RunStatus.over_budget and len(model.requests) == 3

    done = await o.resume(first.run_id, budget=Budget(max_calls=20))
    assert done.status is RunStatus.succeeded and done.answer == "THE ANSWER"
    for n in range(1, 5):
        assert len(worker_requests(model, f"do t{n}")) == 1
    assert done.calls == 3 + 2 + 1  # plan, t1, t2; then t3, t4 and the synthesis
    await assert_books(o, done)


# --- the pieces ---------------------------------------------------------------------------


def test_budget_rejects_limits_that_make_no_sense() -> None:
    for bad in ({"max_calls": 0}, {"max_cost_usd": -1}, {"max_dollars": 1}, {"on_limit": "stop"}):
        with pytest.raises(ValidationError):
            Budget(**bad)
    assert not Budget().limited and Budget(max_seconds=1).limited


def test_the_ledger_asks_the_meter_before_a_call_opens() -> None:
    ledger = CallLedger("r")
    meter = BudgetMeter(Budget(max_calls=2), before=Books(calls=1))
    meter.attach(ledger)
    request = ModelRequest(messages=[Message(role="user", content="hello there")])
    scope = ledger.scope(CallPurpose.task, task_id="t1", worker="w")

    scope.open("scripted", request).close("ok")
    with pytest.raises(BudgetExceededError) as refused:
        scope.open("scripted", request)

    assert (refused.value.limit, refused.value.used, refused.value.allowed) == ("max_calls", 2, 2)
    assert ledger.calls == 1 and meter.calls == 2  # the refused call left no record


def test_the_event_round_trips_through_json() -> None:
    event = BudgetExceeded(run_id="r", limit="max_tokens", used=12, allowed=10, on_limit="finish")
    assert EVENT_ADAPTER.validate_json(event.model_dump_json()) == event


# --- the command line ---------------------------------------------------------------------

runner = CliRunner()


def stored(run_id: str | None = None):
    async def read():
        store = SQLiteStore(os.environ["FOREMAN_DB"])
        try:
            return await store.get_run(run_id or (await store.list_runs(1))[0].run_id)
        finally:
            await store.aclose()

    return asyncio.run(read())


def test_cli_flags_stop_the_run_show_the_limit_and_resume_raises_it(scripted) -> None:
    model = scripted(Script(CHAIN, synthesis="THE ANSWER"))
    result = runner.invoke(app, ["run", "x", "--budget-calls", "2", "--on-budget", "cancel"])
    assert result.exit_code == 6, result.output
    assert "budget exceeded: calls 2 >= max_calls 2" in result.output
    assert "--budget-calls" in result.output  # the hint names the flag to raise
    record = stored()
    assert record.status is RunStatus.over_budget
    assert record.settings["budget"] == Budget(max_calls=2, on_limit="cancel").model_dump()

    assert "over_budget (calls)" in runner.invoke(app, ["runs"]).output
    [shown] = json.loads(runner.invoke(app, ["runs", "--json"]).output)
    assert (shown["status"], shown["budget_limit"]) == ("over_budget", "max_calls")
    assert "budget exceeded: calls 2" in runner.invoke(app, ["show", record.run_id]).output

    assert runner.invoke(app, ["resume", record.run_id]).exit_code == 6  # the stored budget
    assert len(model.requests) == 2

    result = runner.invoke(app, ["resume", record.run_id, "--budget-calls", "5"])
    assert result.exit_code == 0, result.output
    assert "THE ANSWER" in result.output
    assert len(worker_requests(model, "do t1")) == len(worker_requests(model, "do t2")) == 1
    assert stored(record.run_id).calls == 4  # plan, t1; then t2 and the synthesis


def test_a_team_file_budget_applies_and_flags_override_it(scripted, tmp_path) -> None:
    team = tmp_path / "team.yaml"
    team.write_text("include_defaults: true\nbudget:\n  max_calls: 2\n  on_limit: cancel\n")
    scripted(Script(CHAIN))
    assert runner.invoke(app, ["run", "x", "--team", str(team)]).exit_code == 6
    assert stored().settings["budget"]["on_limit"] == "cancel"

    scripted(Script(CHAIN))
    result = runner.invoke(app, ["run", "x", "--team", str(team), "--budget-calls", "9"])
    assert result.exit_code == 0, result.output
    assert stored().settings["budget"] == Budget(max_calls=9, on_limit="cancel").model_dump()


def test_a_bad_budget_is_one_clear_line(scripted, tmp_path) -> None:
    team = tmp_path / "team.yaml"
    team.write_text("include_defaults: true\nbudget:\n  max_dollars: 2\n")
    result = runner.invoke(app, ["run", "x", "--team", str(team)])
    assert result.exit_code == 1
    assert f"Team file {team}, budget: max_dollars" in " ".join(result.output.split())

    result = runner.invoke(app, ["run", "x", "--budget-usd", "0"])
    assert result.exit_code == 2 and "greater than 0" in result.output


@pytest.mark.parametrize("value", ["inf", "1e309", "nan"])
@pytest.mark.parametrize("flag", ["--budget-usd", "--budget-seconds", "--plan-budget-usd"])
def test_a_budget_that_is_not_a_finite_number_is_one_clear_line(scripted, flag, value) -> None:
    """``inf`` passed as a positive number, then crashed the planner's prompt (a budget
    in cents) or stored a run failed with an OverflowError."""
    model = scripted(Script(CHAIN))
    result = runner.invoke(app, ["run", "x", flag, value])
    assert result.exit_code == 2 and model.requests == [], result.output
    assert flag in " ".join(result.output.split()) and "Traceback" not in result.output


@pytest.mark.parametrize("line", ["max_calls: true", "max_cost_usd: true", 'max_tokens: "500"'])
def test_a_team_budget_that_is_not_a_number_is_one_clear_line(scripted, tmp_path, line) -> None:
    """YAML's `true` became 1 call (or $1), a quoted number a number."""
    model = scripted(Script(CHAIN))
    team = tmp_path / "team.yaml"
    team.write_text(f"include_defaults: true\nbudget:\n  {line}\n")
    result = runner.invoke(app, ["run", "x", "--team", str(team)])
    assert result.exit_code == 1 and model.requests == [], result.output
    assert f"Team file {team}, budget: {line.split(':')[0]}" in " ".join(result.output.split())


async def test_resume_with_a_raised_cost_limit_plans_within_the_raised_one(monkeypatch) -> None:
    """The planner's budget was the cost limit the orchestrator was made with: resumed with
    a raised one, planning still had to fit $0.25, failed and stored the run `failed`."""
    monkeypatch.setenv("FOREMAN_PRICES", '{"scripted": [1000, 1000]}')  # $0.001 a token
    model = ScriptedModel(Script([CHAIN] * 4))
    orchestrator = Orchestrator(TEAM, model=model, budget=Budget(max_cost_usd=0.25))
    stopped = await orchestrator.run("q")
    assert stopped.status is RunStatus.over_budget

    done = await orchestrator.resume(stopped.run_id, budget=Budget(max_cost_usd=100.0))
    assert done.status is RunStatus.succeeded, done.error


async def test_an_approval_given_after_the_time_ran_out_is_kept_for_the_resume() -> None:
    """The person took longer than the time limit: the task's call was refused, but its
    approval was recorded as used (started), so the resume asked again, "may have run"."""
    now = [1000.0]
    asked: list[tuple[str, bool]] = []

    def approve(approval) -> bool:
        asked.append((approval.task_id, approval.may_have_run))
        now[0] += 100  # the person takes 100 s to answer
        return True

    plan = plan_of(task("t1", "deployer"))
    orchestrator = Orchestrator(
        Registry([worker("deployer", risk="high")]),
        model=ScriptedModel(Script(plan)),
        budget=Budget(max_seconds=50),
        timer=lambda: now[0],
        approve=approve,
    )
    stopped = await orchestrator.run("q", plan=plan)
    assert stopped.status is RunStatus.over_budget and asked == [("t1", False)]

    done = await orchestrator.resume(stopped.run_id, budget=Budget(max_seconds=500))
    assert done.status is RunStatus.succeeded
    assert asked == [("t1", False)]  # not asked again: the approval was never used


async def test_a_limit_reached_on_estimates_says_what_the_books_came_to() -> None:
    """Calls in flight count at their estimated input when a limit is checked; those
    estimates were above what the calls then spent, and the error stated a figure the
    books never reached."""
    fan = plan_of(task("t1"), task("t2"), task("t3"), task("t5"), task("t4", "writer", "t1"))
    slow = latency_by_instructions({"do t2": 0.2, "do t3": 0.3, "do t5": 0.05})
    model = ScriptedModel(Script(fan), latency=slow)
    orchestrator = Orchestrator(TEAM, model=model, budget=Budget(max_tokens=25), concurrency=4)
    stopped = await orchestrator.run("q", plan=fan)

    assert stopped.status is RunStatus.over_budget and stopped.budget_limit == "max_tokens"
    spent = stopped.usage.total_tokens
    assert spent < 25 and f"{spent} once they settled" in (stopped.error or "")


def test_a_budget_given_in_python_must_be_finite() -> None:
    with pytest.raises(ValidationError):
        Budget(max_cost_usd=float("inf"))
    with pytest.raises(ValidationError):
        Budget(max_seconds=float("inf"))
    with pytest.raises(ConfigError, match="plan_budget_usd"):
        Orchestrator(model=ScriptedModel(Script(CHAIN)), plan_budget_usd=float("inf"))


@pytest.mark.parametrize("flag", ["--budget-usd", "--budget-seconds"])
def test_a_zero_budget_names_its_flag_and_help_does_not_offer_zero(scripted, flag) -> None:
    """``--help`` said ``[x>=0]`` for these, yet 0 was refused, under ``--budget-*``."""
    model = scripted(Script(CHAIN))
    result = runner.invoke(app, ["run", "x", flag, "0"])
    assert result.exit_code == 2 and model.requests == []
    said = " ".join(result.output.split())
    assert flag in said and "greater than 0" in said
    shown = " ".join(runner.invoke(app, ["run", "--help"], terminal_width=200).output.split())
    assert "x>=0]" not in shown.split(flag, 1)[1].split("--", 1)[0]
