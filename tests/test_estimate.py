"""Cost before it is spent: plan estimates from the ledger's history or typical values, the
schedule's time, the planner's budget, and ``foreman plan``'s estimate."""

from __future__ import annotations

import itertools
import json

import pytest
from typer.testing import CliRunner

from foreman import Orchestrator
from foreman.cli import app
from foreman.engine.estimate import (
    TYPICAL_CALL_SECONDS,
    TYPICAL_OUTPUT_SHARE,
    TYPICAL_TOKENS_PER_SECOND,
    StepEstimate,
    schedule_seconds,
)
from foreman.errors import ConfigError, PlanError
from foreman.events import PlanRejected
from foreman.ledger.records import CallPurpose, CallRecord, CallStatus
from foreman.models.base import Usage
from foreman.models.pricing import cost
from foreman.plan.prompts import format_usd
from foreman.store.base import RunRecord
from foreman.store.memory import MemoryStore
from foreman.store.sqlite import SQLiteStore
from foreman.testing import ScriptedModel
from foreman.workers import Registry
from helpers import Script, plan_json, plan_of, task, worker

#: Dollars per million tokens of the test model: input 1, output 2 (so they cannot swap).
PRICES = '{"fake": [1, 2]}'
DIAMOND = plan_of(
    task("t1", "researcher"),
    task("t2", "analyst", "t1"),
    task("t3", "writer", "t1"),
    task("t4", "summariser", "t2", "t3"),
)


CALL_IDS = itertools.count(1)


@pytest.fixture(autouse=True)
def prices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOREMAN_PRICES", PRICES)


def call(
    run_id: str,
    task_id: str | None,
    *,
    purpose: CallPurpose = CallPurpose.task,
    worker: str | None = "researcher",
    model: str = "fake",
    tokens: tuple[int, int] = (100, 10),
    latency: float = 1.0,
    status: CallStatus = CallStatus.ok,
) -> CallRecord:
    parent = f"task:{task_id}" if task_id else purpose.value
    return CallRecord(
        run_id=run_id,
        call_id=f"c{next(CALL_IDS)}",
        parent=parent,
        purpose=purpose,
        task_id=task_id,
        worker=worker,
        provider="unknown",
        model=model,
        latency=latency,
        usage=Usage(input_tokens=tokens[0], output_tokens=tokens[1]),
        status=status,
    )


async def with_history(store, calls: list[CallRecord]) -> None:
    for run_id in dict.fromkeys(record.run_id for record in calls):
        await store.create_run(RunRecord(run_id=run_id, request="earlier"))
        await store.save_calls(run_id, [c for c in calls if c.run_id == run_id])


def orchestrator(store=None, **kwargs) -> Orchestrator:
    kwargs.setdefault("models", {"fake": ScriptedModel(Script(DIAMOND), name="fake")})
    return Orchestrator(model="fake", store=store or MemoryStore(), **kwargs)


# --- history -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_a_task_is_estimated_from_its_workers_history_on_its_model(kind, tmp_path) -> None:
    store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "runs.db")
    await with_history(
        store,
        [
            # run a: one task, a failed attempt then an answer; run b: one task, one answer
            call("a", "t1", tokens=(0, 0), latency=0.5, status=CallStatus.error),
            call("a", "t1", tokens=(100, 10), latency=1.0),
            call("b", "t1", tokens=(300, 30), latency=3.0),
            call("b", "t2", tokens=(200, 20), latency=2.0),
            # other workers and models say nothing about the researcher on fake
            call("b", "t3", worker="writer", tokens=(9000, 900), latency=90.0),
            call("b", "t4", model="other", tokens=(9000, 900), latency=90.0),
        ],
    )
    one = plan_of(task("t1", "researcher"))

    async with orchestrator(store) as o:
        estimate = await o.estimate(one)

    [t1] = estimate.tasks
    assert (t1.task_id, t1.worker, t1.model) == ("t1", "researcher", "fake")
    assert t1.basis == "history: 3 calls"  # the answered ones the medians come from
    calls_per_task = 4 / 3  # four attempts over three past tasks
    assert t1.calls == pytest.approx(calls_per_task)
    assert t1.input_tokens == round(200 * calls_per_task)  # medians of the answered calls
    assert t1.output_tokens == round(20 * calls_per_task)
    assert t1.seconds == pytest.approx(2.0 * calls_per_task)
    expected = cost("fake", Usage(input_tokens=267, output_tokens=27))
    assert t1.cost_usd == pytest.approx(expected)


async def test_reviews_and_planning_and_synthesis_come_from_their_own_history() -> None:
    store = MemoryStore()
    await with_history(
        store,
        [
            call("a", None, purpose=CallPurpose.plan, worker=None, tokens=(500, 50), latency=4),
            call("a", "t1", tokens=(100, 10), latency=1.0),
            call("a", "t1", purpose=CallPurpose.review, worker="fact_checker", tokens=(40, 4)),
            call("a", "t1", purpose=CallPurpose.review, worker="fact_checker", tokens=(40, 4)),
            call("a", None, purpose=CallPurpose.synthesis, worker=None, tokens=(700, 70)),
        ],
    )
    two = plan_of(task("t1", "researcher"), task("t2", "researcher", "t1"))

    async with orchestrator(store, validator="fact_checker") as o:
        estimate = await o.estimate(two)

    t1 = estimate.task("t1")
    assert t1.basis == "history: 1 call; review history: 2 calls"
    assert t1.calls == 1 + 2  # two reviews per task, as in the past
    assert (t1.input_tokens, t1.output_tokens) == (100 + 2 * 40, 10 + 2 * 4)
    assert t1.seconds == pytest.approx(1.0 + 2 * 1.0)
    assert estimate.planning is not None and estimate.planning.basis == "history: 1 call"
    assert estimate.planning.input_tokens == 500
    assert estimate.synthesis is not None and estimate.synthesis.output_tokens == 70
    steps = [estimate.planning, *estimate.tasks, estimate.synthesis]
    assert estimate.cost_usd == pytest.approx(sum(step.cost_usd for step in steps))
    assert estimate.seconds == pytest.approx(4 + 3 + 3 + 1)  # planning, t1 then t2, synthesis


# --- typical values ------------------------------------------------------------------------


async def test_without_history_typical_tokens_and_prices_are_used() -> None:
    team = Registry([worker("researcher", max_tokens=400), worker("writer", max_tokens=1000)])
    two = plan_of(task("t1", "researcher"), task("t2", "writer", "t1"))

    async with orchestrator(workers=team) as o:
        estimate = await o.estimate(two, "write about TLS")

    t1, t2 = estimate.tasks
    assert t1.basis == t2.basis == "typical" and t1.calls == 1
    assert t1.output_tokens == 400 * TYPICAL_OUTPUT_SHARE
    assert t2.output_tokens == 1000 * TYPICAL_OUTPUT_SHARE
    assert t2.input_tokens > t1.output_tokens  # t1's answer is part of t2's input
    assert t1.cost_usd == pytest.approx((t1.input_tokens * 1 + t1.output_tokens * 2) / 1e6)
    assert t2.seconds == pytest.approx(
        TYPICAL_CALL_SECONDS + t2.output_tokens / TYPICAL_TOKENS_PER_SECOND
    )
    assert estimate.synthesis is not None and estimate.synthesis.basis == "typical"
    assert estimate.unpriced == []


async def test_a_model_without_a_price_leaves_the_cost_unknown_not_zero(monkeypatch) -> None:
    monkeypatch.setenv("FOREMAN_PRICES", "{}")

    async with orchestrator() as o:
        estimate = await o.estimate(DIAMOND)

    assert all(step.cost_usd is None for step in estimate.tasks)
    assert estimate.cost_usd is None and estimate.unpriced == ["fake"]
    assert estimate.seconds > 0  # time needs no price


async def test_concat_assembly_and_a_single_task_need_no_synthesis() -> None:
    async with orchestrator(assembly="concat") as o:
        assert (await o.estimate(DIAMOND)).synthesis is None
    async with orchestrator() as o:
        assert (await o.estimate(plan_of(task("t1")))).synthesis is None
        assert (await o.estimate(DIAMOND)).synthesis is not None


# --- time: the schedule --------------------------------------------------------------------

SECONDS = {"t1": 1.0, "t2": 5.0, "t3": 2.0, "t4": 1.0}


def test_a_diamonds_time_is_its_critical_path() -> None:
    assert schedule_seconds(DIAMOND, SECONDS) == 1 + 5 + 1


def test_the_schedule_respects_concurrency_and_worker_limits() -> None:
    assert schedule_seconds(DIAMOND, SECONDS, concurrency=1) == sum(SECONDS.values())
    fan = plan_of(*(task(f"t{i}", "researcher") for i in range(1, 5)))
    ones = dict.fromkeys(("t1", "t2", "t3", "t4"), 1.0)
    assert schedule_seconds(fan, ones) == 1
    assert schedule_seconds(fan, ones, concurrency=2) == 2
    assert schedule_seconds(fan, ones, worker_limits={"researcher": 1}) == 4


async def test_the_plans_time_is_planning_then_the_critical_path_then_synthesis() -> None:
    store = MemoryStore()
    latencies = {"researcher": 1.0, "analyst": 5.0, "writer": 2.0, "summariser": 1.0}
    await with_history(
        store,
        [
            call("a", f"t{n}", worker=name, latency=s)
            for n, (name, s) in enumerate(latencies.items())
        ]
        + [
            call("a", None, purpose=CallPurpose.plan, worker=None, latency=3.0),
            call("a", None, purpose=CallPurpose.synthesis, worker=None, latency=4.0),
        ],
    )

    async with orchestrator(store) as o:
        estimate = await o.estimate(DIAMOND)

    assert estimate.seconds == pytest.approx(3 + (1 + 5 + 1) + 4)
    assert [t.seconds for t in estimate.tasks] == [1.0, 5.0, 2.0, 1.0]
    assert estimate.cost_usd == pytest.approx(
        sum(s.cost_usd for s in [estimate.planning, *estimate.tasks, estimate.synthesis])
    )


# --- the planner's budget ------------------------------------------------------------------

BIG = plan_of(*(task(f"t{i}", "writer") for i in range(1, 7)))
SMALL = plan_of(task("t1", "researcher"))


async def test_a_plan_over_the_budget_goes_back_to_the_planner_until_one_fits() -> None:
    model = ScriptedModel(Script([BIG, SMALL]), name="fake")
    async with orchestrator(models={"fake": model}, plan_budget_usd=0.005) as o:
        big = (await o.estimate(BIG)).cost_usd
        small = (await o.estimate(SMALL)).cost_usd
        assert small < 0.005 < big  # the test's premise
        events = []
        plan, _ = await o.plan("write about TLS", on_event=events.append)

    assert plan == SMALL
    [rejected] = [event for event in events if isinstance(event, PlanRejected)]
    assert rejected.errors == [
        f"The plan's estimated cost {format_usd(big)} exceeds the budget $0.005: use fewer or "
        "cheaper tasks."
    ]
    first, second = model.requests
    assert "must cost at most $0.005;" in first.system
    assert "writer (about $" in first.system  # each worker's typical cost
    assert rejected.errors[0] in second.messages[-1].content


async def test_no_plan_within_the_budget_is_a_plan_error_that_says_so() -> None:
    model = ScriptedModel(Script([BIG, BIG]), name="fake")
    async with orchestrator(models={"fake": model}, plan_budget_usd=0.005, max_plan_retries=1) as o:
        with pytest.raises(PlanError, match=r"no plan within the budget of \$0.005 in 2") as info:
            await o.plan("write about TLS")

    assert "exceeds the budget" in str(info.value)
    assert len(model.requests) == 2


async def test_a_budget_without_prices_fails_before_any_call(monkeypatch) -> None:
    monkeypatch.setenv("FOREMAN_PRICES", "{}")
    model = ScriptedModel(Script(SMALL), name="fake")
    async with orchestrator(models={"fake": model}, plan_budget_usd=1.0) as o:
        with pytest.raises(ConfigError, match="no price is known for fake"):
            await o.plan("x")
    assert model.requests == []


async def test_a_plan_on_a_worker_without_a_price_goes_back_within_a_budget() -> None:
    mystery = ScriptedModel("?", name="mystery")  # no price in PRICES
    team = Registry([worker("researcher"), worker("oracle", model="mystery")])
    model = ScriptedModel(Script([plan_of(task("t1", "oracle")), SMALL]), name="fake")
    models = {"fake": model, "mystery": mystery}
    async with orchestrator(workers=team, models=models, plan_budget_usd=1.0) as o:
        events = []
        plan, _ = await o.plan("x", on_event=events.append)

    assert plan == SMALL
    [rejected] = [event for event in events if isinstance(event, PlanRejected)]
    assert rejected.errors == [
        "The plan's cost cannot be estimated: no price is known for mystery. Within a "
        "budget, use only workers whose cost is known."
    ]
    assert "- oracle (cost unknown):" in model.requests[0].system


def test_a_step_is_from_history_only_when_all_its_calls_are() -> None:
    """The plan table's total said "4 of 4 steps from history" for tasks whose reviews
    were typical."""
    step = {"model": "m", "calls": 2, "input_tokens": 1, "output_tokens": 1}
    step |= {"cost_usd": None, "seconds": 1.0}
    assert StepEstimate(**step, basis="history: 3 calls").from_history
    assert StepEstimate(**step, basis="history: 3 calls; review history: 2 calls").from_history
    assert not StepEstimate(**step, basis="history: 1 call; review typical").from_history
    assert not StepEstimate(**step, basis="typical").from_history


async def test_without_a_budget_the_prompt_has_no_prices() -> None:
    model = ScriptedModel(Script(BIG), name="fake")
    async with orchestrator(models={"fake": model}) as o:
        assert (await o.plan("x"))[0] == BIG
    assert "$" not in model.requests[0].system


@pytest.mark.parametrize("budget", [0, -1.0, float("nan")])
def test_a_budget_must_be_positive(budget) -> None:
    with pytest.raises(ConfigError, match="plan_budget_usd"):
        orchestrator(plan_budget_usd=budget)


async def test_a_run_within_a_budget_runs_the_plan_that_fits() -> None:
    model = ScriptedModel(Script([BIG, SMALL]), name="fake")
    async with orchestrator(models={"fake": model}, plan_budget_usd=0.005) as o:
        result = await o.run("write about TLS")
    assert result.plan == SMALL and result.status.value == "succeeded"


# --- the CLI -------------------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch):
    def use(script) -> ScriptedModel:
        model = ScriptedModel(script, name="fake")
        monkeypatch.setattr("foreman.models.pool.load_model", lambda name=None: model)
        return model

    monkeypatch.delenv("FOREMAN_MODEL", raising=False)
    return use


def test_plan_shows_each_tasks_cost_and_time_and_the_totals_in_80_columns(scripted) -> None:
    scripted(Script(DIAMOND))
    result = runner.invoke(app, ["plan", "write about TLS"], terminal_width=80)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert all(len(line) <= 80 for line in lines)
    tree = [line for line in lines if " ~$" in line]
    assert len(tree) == 4  # each task once (t4 shows again as "see above")
    [total] = [line for line in lines if line.lstrip().startswith("total")]
    assert "0 of 6 steps from history" in total  # planning, 4 tasks, synthesis


def test_plan_json_includes_the_estimate(scripted) -> None:
    scripted(Script(DIAMOND))
    result = runner.invoke(app, ["plan", "x", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [t["id"] for t in data["tasks"]] == ["t1", "t2", "t3", "t4"]
    estimate = data["estimate"]
    assert [t["task_id"] for t in estimate["tasks"]] == ["t1", "t2", "t3", "t4"]
    assert estimate["tasks"][0]["basis"] == "typical" and estimate["cost_usd"] > 0


def test_plan_uses_the_stores_history(scripted, tmp_path) -> None:
    scripted(Script(DIAMOND))
    db = str(tmp_path / "runs.db")
    assert runner.invoke(app, ["run", "x", "--db", db]).exit_code == 0
    result = runner.invoke(app, ["plan", "x", "--json", "--db", db])
    estimate = json.loads(result.output)["estimate"]
    assert [t["basis"] for t in estimate["tasks"]] == ["history: 1 call"] * 4


def test_plan_budget_usd_reaches_the_planner(scripted) -> None:
    model = scripted(Script([BIG, SMALL]))
    result = runner.invoke(app, ["plan", "x", "--json", "--plan-budget-usd", "0.005"])
    assert result.exit_code == 0, result.output
    assert [t["id"] for t in json.loads(result.output)["tasks"]] == ["t1"]
    assert len(model.requests) == 2


def test_no_plan_within_the_budget_is_one_line_and_exit_1(scripted) -> None:
    scripted(Script([plan_json(BIG)] * 3))
    result = runner.invoke(app, ["run", "x", "--plan-budget-usd", "0.001"])
    assert result.exit_code == 1
    assert "no plan within the budget of $0.001 in" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("dollars", "text"),
    [
        (0, "$0"),
        (0.00001, "<$0.0001"),
        (0.0012, "$0.0012"),
        (0.005, "$0.005"),
        (0.0117, "$0.012"),
        (0.02, "$0.02"),
        (0.12, "$0.12"),
        (1.5, "$1.50"),
        (1234.5, "$1,234.50"),
    ],
)
def test_dollars_read_as_what_they_are(dollars, text) -> None:
    assert format_usd(dollars) == text


@pytest.mark.parametrize("budget", ["0", "-0.5", "nan"])
def test_a_budget_that_is_not_positive_is_a_usage_error(scripted, budget) -> None:
    model = scripted(Script(SMALL))
    result = runner.invoke(app, ["plan", "x", "--plan-budget-usd", budget])
    assert result.exit_code == 2
    assert "positive amount of dollars" in result.output
    assert model.requests == []
