"""The delegating driver (``mode="delegate"``): the orchestrator model delegates to workers
as tools, turn by turn; each delegation is a checkpointed, approved, ledgered task."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from foreman import Budget, Orchestrator, Registry, RunStatus, load_team
from foreman.cli import app
from foreman.cli.render import LiveProgress
from foreman.engine.context import COMPACTION_SYSTEM
from foreman.engine.drivers.delegation_prompts import LAST_TURN
from foreman.errors import ConfigError, ForemanError, ModelError
from foreman.events import (
    EVENT_ADAPTER,
    ContextCompacted,
    Event,
    OrchestratorTurn,
    TaskFinished,
    TaskStarted,
)
from foreman.ledger.records import CallPurpose
from foreman.models.base import ModelRequest, ToolCall, Usage
from foreman.plan.schema import Task
from foreman.store.sqlite import SQLiteStore
from foreman.testing import ScriptedModel
from foreman.workers.spec import RiskLevel
from helpers import worker

Turn = Callable[[ModelRequest], Any]


def delegate(worker_name: str, instructions: str, *inputs: str) -> ToolCall:
    arguments: dict[str, Any] = {"instructions": instructions}
    if inputs:
        arguments["inputs"] = list(inputs)
    return ToolCall(id="", name=worker_name, arguments=arguments)


def turn_of(request: ModelRequest) -> int:
    return 1 + sum(message.role == "assistant" for message in request.messages)


def scripted(turns: list[Any], *, latency: float = 0.0) -> ScriptedModel:
    """The orchestrator's turns from ``turns`` (by turn number; a callable gets the
    request); each worker answers ``out:<instructions>``."""

    def answer(request: ModelRequest) -> Any:
        if not request.tools:
            return "out:" + json.loads(request.messages[0].content)["instructions"]
        entry = turns[turn_of(request) - 1]
        return entry(request) if callable(entry) else entry

    return ScriptedModel(answer, latency=lambda r: 0.0 if r.tools else latency)


def team(*extra: Any) -> Registry:
    return Registry([worker("researcher"), worker("analyst"), *extra])


def orchestrator_requests(model: ScriptedModel) -> list[ModelRequest]:
    return [request for request in model.requests if request.tools]


def worker_instructions(model: ScriptedModel) -> list[str]:
    return [
        json.loads(r.messages[0].content)["instructions"] for r in model.requests if not r.tools
    ]


async def test_parallel_delegations_then_a_follow_up_then_the_answer() -> None:
    model = scripted(
        [
            [delegate("researcher", "research A"), delegate("researcher", "research B")],
            [delegate("analyst", "compare", "d1-1", "d1-2")],
            "A beats B.",
        ],
        latency=0.01,
    )
    events: list[Event] = []
    orchestrator = Orchestrator(team(), model=model, mode="delegate")
    result = await orchestrator.run("Compare A and B", on_event=events.append)

    assert (result.status, result.answer) == (RunStatus.succeeded, "A beats B.")
    assert [t.id for t in result.plan.tasks] == ["d1-1", "d1-2", "d2-1"]
    assert result.plan.task("d2-1").depends_on == ["d1-1", "d1-2"]
    # The analyst got both research outputs as its inputs, in full.
    analyst_input = json.loads(result.tasks["d2-1"].input)
    assert analyst_input["inputs"] == {"d1-1": "out:research A", "d1-2": "out:research B"}
    # Both research tasks were running at once.
    order = [(e.type, e.task_id) for e in events if isinstance(e, TaskStarted | TaskFinished)]
    assert order[:2] == [("task_started", "d1-1"), ("task_started", "d1-2")]
    turns = [e for e in events if isinstance(e, OrchestratorTurn)]
    assert all(EVENT_ADAPTER.validate_json(t.model_dump_json()) == t for t in turns)
    assert [(t.turn, len(t.delegations), t.final) for t in turns] == [
        (1, 2, False),
        (2, 1, False),
        (3, 0, True),
    ]
    # The third turn saw every call it made and every result, paired by id.
    third = orchestrator_requests(model)[2]
    assert [c.id for c in third.messages[1].tool_calls] == ["d1-1", "d1-2"]
    results = [json.loads(r.content) for r in third.messages[2].tool_results]
    assert results[1] == {"id": "d1-2", "status": "succeeded", "output": "out:research B"}
    assert third.messages[4].tool_results[0].call_id == "d2-1"
    # Every turn is on the books as a `delegate` call; every delegation as a task.
    calls = await orchestrator.store.list_calls(run_id=result.run_id)
    purposes = sorted(c.purpose.value for c in calls)
    assert purposes == ["delegate"] * 3 + ["task"] * 3
    assert result.calls == 6
    record = await orchestrator.store.get_run(result.run_id)
    assert record.settings["mode"] == "delegate" and record.plan == result.plan
    # Each turn's delegations are a plan version that says what it added (`foreman show`).
    versions = await orchestrator.store.list_plans(result.run_id)
    assert [(v.version, v.reason) for v in versions] == [(1, None), (2, "delegated on turn 2")]
    assert versions[1].changes.added == ["d2-1"]


async def test_an_empty_answer_is_asked_again_and_never_taken_as_the_answer() -> None:
    """A turn with no delegation and no text is no answer: asked again (a failed call on
    the books), and a run whose orchestrator never answers fails, not succeeds with ""."""
    said = iter(["  ", "Done: A."])
    model = scripted([[delegate("researcher", "research A")], lambda request: next(said)])
    orchestrator = Orchestrator(team(), model=model, mode="delegate")
    result = await orchestrator.run("r")

    assert (result.status, result.answer) == (RunStatus.succeeded, "Done: A.")
    calls = await orchestrator.store.list_calls(run_id=result.run_id)
    turns = [(c.status.value, c.error_type) for c in calls if c.purpose is CallPurpose.delegate]
    assert turns == [("ok", None), ("error", "OutputValidationError"), ("ok", None)]

    silent = scripted([[delegate("researcher", "research A")], ""])
    quiet = Orchestrator(team(), model=silent, mode="delegate")
    with pytest.raises(ForemanError, match="neither an answer nor a delegation"):
        await quiet.run("r")
    [run] = await quiet.store.list_runs()
    assert run.status is RunStatus.failed


async def test_refused_calls_are_answered_with_why_and_become_no_task() -> None:
    def second(request: ModelRequest) -> str:
        refusals = [r for r in request.messages[2].tool_results if r.is_error]
        return " | ".join(r.content for r in refusals)

    model = scripted(
        [
            [
                delegate("researcher", "fine"),
                delegate("painter", "paint"),
                delegate("analyst", "compare", "d9-9"),
                ToolCall(id="", name="analyst", arguments={"instructions": ""}),
            ],
            second,
        ]
    )
    result = await Orchestrator(team(), model=model, mode="delegate").run("r")
    assert list(result.tasks) == ["d1-1"]
    assert "no worker 'painter'" in result.answer
    assert "'d9-9', which are not results of earlier delegations" in result.answer
    assert "`instructions` must be a non-empty string" in result.answer
    ids = [c.id for c in orchestrator_requests(model)[1].messages[1].tool_calls]
    assert ids == ["d1-1", "d1-2", "d1-3", "d1-4"]  # every call numbered, refused or not


async def test_the_last_turn_must_answer_and_a_model_that_will_not_fails_the_run() -> None:
    model = scripted([[delegate("researcher", "one")], [delegate("researcher", "two")]])
    orchestrator = Orchestrator(team(), model=model, mode="delegate", max_turns=2)
    with pytest.raises(ForemanError, match="still delegated on its last turn"):
        await orchestrator.run("r")
    first, last = orchestrator_requests(model)
    assert (first.tool_choice, last.tool_choice) == ("auto", "none")
    assert LAST_TURN in last.system and LAST_TURN not in first.system
    [run] = await orchestrator.store.list_runs()
    assert run.status is RunStatus.failed


async def test_delegations_past_the_limit_are_refused_and_the_next_turn_answers() -> None:
    model = scripted([[delegate("researcher", f"r{n}") for n in range(3)], "done"])
    orchestrator = Orchestrator(team(), model=model, mode="delegate", max_tasks=2)
    result = await orchestrator.run("r")
    assert list(result.tasks) == ["d1-1", "d1-2"] and result.answer == "done"
    last = orchestrator_requests(model)[1]
    assert last.tool_choice == "none"
    assert "limit of delegations" in last.messages[2].tool_results[2].content


async def test_a_risky_delegation_waits_and_resume_never_repeats_a_settled_one(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.db"
    deployer = worker("deployer", risk=RiskLevel.high)
    first = scripted([[delegate("researcher", "look"), delegate("deployer", "ship it")]])
    async with Orchestrator(
        team(deployer), model=first, mode="delegate", store=SQLiteStore(db)
    ) as orchestrator:
        paused = await orchestrator.run("Ship")
    assert paused.status is RunStatus.waiting_approval and paused.answer is None
    assert worker_instructions(first) == ["look"]  # the deployer waits for a person

    then = scripted([None, lambda r: "shipped after " + r.messages[2].tool_results[1].content])
    store = SQLiteStore(db)
    await store.decide(paused.run_id, "d1-2", approved=True, note=None)
    # A plain orchestrator (mode plan) resumes it: the run keeps the mode it started with.
    async with Orchestrator(team(deployer), model=then, store=store) as orchestrator:
        done = await orchestrator.resume(paused.run_id)
    assert done.status is RunStatus.succeeded
    assert worker_instructions(then) == ["ship it"]  # the research was not run again
    [turn] = orchestrator_requests(then)  # nor was turn 1 asked again: its calls are rebuilt
    assert [c.name for c in turn.messages[1].tool_calls] == ["researcher", "deployer"]
    assert json.loads(done.answer.removeprefix("shipped after "))["output"] == "out:ship it"


async def test_the_budget_stops_the_delegations_and_keeps_what_finished() -> None:
    model = scripted([[delegate("researcher", "a"), delegate("researcher", "b")], "never"])
    orchestrator = Orchestrator(
        team(),
        model=model,
        mode="delegate",
        concurrency=1,
        budget=Budget(max_calls=2),
    )
    result = await orchestrator.run("r")
    assert result.status is RunStatus.over_budget and result.budget_limit == "max_calls"
    assert [t for t, r in result.tasks.items() if r.succeeded] == ["d1-1"]
    assert "out:a" in (result.answer or "")
    assert result.calls == 2


def test_mode_comes_from_the_team_file_and_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "team.yaml"
    path.write_text("include_defaults: true\nmode: delegate\n")
    assert Orchestrator(load_team(path), model=ScriptedModel([])).config.mode == "delegate"
    assert Orchestrator(load_team(path), model=ScriptedModel([]), mode="plan").config.mode == "plan"
    path.write_text("include_defaults: true\nmode: freestyle\n")
    with pytest.raises(ConfigError, match="'mode' must be 'plan' or 'delegate'"):
        load_team(path)
    with pytest.raises(ConfigError, match="max_turns"):
        Orchestrator(model=ScriptedModel([]), mode="delegate", max_turns=0)


@pytest.mark.parametrize(
    ("flags", "named"),
    [(["--replan", "always"], "--replan"), (["--assembly", "concat"], "--assembly")],
)
def test_flags_a_delegating_run_would_ignore_are_refused(monkeypatch, flags, named) -> None:
    """--replan and --assembly were accepted with --mode delegate and did nothing."""
    model = scripted(["the answer"])
    monkeypatch.setattr("foreman.models.pool.load_model", lambda name=None: model)
    result = CliRunner().invoke(app, ["run", "q", "--mode", "delegate", *flags])
    assert result.exit_code == 2 and named in " ".join(result.output.split())
    assert model.requests == []


def test_foreman_run_mode_delegate_from_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    model = scripted([[delegate("researcher", "look")], "the answer"])
    monkeypatch.setattr("foreman.models.pool.load_model", lambda name=None: model)
    result = CliRunner().invoke(app, ["run", "a question", "--mode", "delegate", "--json"])
    assert result.exit_code == 0, result.output
    events = [EVENT_ADAPTER.validate_json(line) for line in result.output.splitlines()]
    assert [e.type for e in events if isinstance(e, OrchestratorTurn)] == ["orchestrator_turn"] * 2
    assert events[-1].result.answer == "the answer"
    assert events[-1].result.plan.tasks[0].worker == "researcher"
    assert not any(r.output_schema for r in model.requests)  # no planner call was made


def test_the_live_view_lists_delegations_as_the_turns_make_them() -> None:
    progress = LiveProgress(Console(record=True, width=120))
    task = Task(id="d1-1", worker="researcher", instructions="look")
    progress.handle(OrchestratorTurn(run_id="r", turn=1, delegations=[task], usage=Usage()))
    progress.handle(TaskStarted(run_id="r", task_id="d1-1", worker="researcher"))
    follow_up = Task(id="d2-1", worker="analyst", instructions="x", depends_on=["d1-1"])
    progress.handle(OrchestratorTurn(run_id="r", turn=2, delegations=[follow_up], usage=Usage()))
    progress.console.print(progress)
    shown = progress.console.export_text()
    assert "Turn 2: 1 delegated" in shown
    rows = [line.split() for line in shown.splitlines()[2:]]
    assert rows[0][:3] == ["d1-1", "researcher", "running"]
    assert rows[1] == ["d2-1", "analyst", "pending", "d1-1"]
    progress.handle(OrchestratorTurn(run_id="r", turn=3, final=True, usage=Usage()))
    assert progress.headline == "Turn 3: answered"


def test_a_team_file_with_mode_delegate_drives_a_cli_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    model = scripted(["straight answer"])
    monkeypatch.setattr("foreman.models.pool.load_model", lambda name=None: model)
    team_file = tmp_path / "team.yaml"
    team_file.write_text("include_defaults: true\nmode: delegate\n")
    result = CliRunner().invoke(app, ["run", "q", "--team", str(team_file), "--json"])
    assert result.exit_code == 0, result.output
    finished = EVENT_ADAPTER.validate_json(result.output.splitlines()[-1])
    assert finished.result.answer == "straight answer" and finished.result.plan.tasks == []
    assert [r.tool_choice for r in model.requests] == ["auto"]  # one turn, no planner


async def test_resume_keeps_a_failure_the_orchestrator_already_saw(tmp_path: Path) -> None:
    """An earlier turn's failed delegation is not run again behind the orchestrator's back:
    it saw the failure and went on; the run resumes from there."""
    db = tmp_path / "runs.db"
    deployer = worker("deployer", risk=RiskLevel.high)

    def model_for(turns: list[Any]) -> ScriptedModel:
        def answer(request: ModelRequest) -> Any:
            if request.tools:
                entry = turns[turn_of(request) - 1]
                return entry(request) if callable(entry) else entry
            instructions = json.loads(request.messages[0].content)["instructions"]
            return ModelError("down") if instructions == "flaky" else "out:" + instructions

        return ScriptedModel(answer)

    first = model_for([[delegate("researcher", "flaky")], [delegate("deployer", "ship")]])
    async with Orchestrator(
        team(deployer), model=first, mode="delegate", store=SQLiteStore(db)
    ) as orchestrator:
        paused = await orchestrator.run("Ship")
    assert paused.status is RunStatus.waiting_approval
    assert paused.tasks["d1-1"].status.value == "failed"

    store = SQLiteStore(db)
    await store.decide(paused.run_id, "d2-1", approved=True, note=None)
    then = model_for([None, None, lambda r: r.messages[2].tool_results[0].content])
    async with Orchestrator(team(deployer), model=then, store=store) as orchestrator:
        done = await orchestrator.resume(paused.run_id)
    assert worker_instructions(then) == ["ship"]  # not "flaky" again
    assert json.loads(done.answer)["status"] == "failed"  # turn 3 saw it as it was
    assert done.status is RunStatus.partial and done.tasks["d1-1"].error == "down"


async def test_past_the_context_budget_older_results_reach_the_orchestrator_summarised() -> None:
    long = "fact " * 400  # ~500 tokens each: two of them overflow a 256-token budget

    def answer(request: ModelRequest) -> Any:
        if request.system == COMPACTION_SYSTEM:
            return "SUMMARY of both"
        if request.tools:
            entry = [
                [delegate("researcher", "a"), delegate("researcher", "b")],
                [delegate("analyst", "compare", "d1-1", "d1-2")],
                lambda r: r.messages[2].tool_results[0].content,
            ][turn_of(request) - 1]
            return entry(request) if callable(entry) else entry
        instructions = json.loads(request.messages[0].content)["instructions"]
        return "short" if instructions == "compare" else long

    model = ScriptedModel(answer)
    events: list[Event] = []
    orchestrator = Orchestrator(team(), model=model, mode="delegate", context_budget=256)
    result = await orchestrator.run("r", on_event=events.append)

    # Turn 2 read summaries in place of the research outputs; every call still paired.
    turn_2 = orchestrator_requests(model)[1].messages[2].tool_results
    assert [r.call_id for r in turn_2] == ["d1-1", "d1-2"]
    assert "fact" not in "".join(r.content for r in turn_2) and "SUMMARY" in turn_2[0].content
    # The analyst still got both research outputs whole.
    assert json.loads(result.tasks["d2-1"].input)["inputs"] == {"d1-1": long, "d1-2": long}
    [compacted] = [e for e in events if isinstance(e, ContextCompacted)]
    assert (compacted.purpose, compacted.compacted) == ("delegate", ["d1-1", "d1-2"])
    assert compacted.tokens_after <= 256 < compacted.tokens_before
    # Compacted once: turn 3 reuses turn 2's summaries, and the short new result fits.
    calls = sorted(
        await orchestrator.store.list_calls(run_id=result.run_id), key=lambda c: c.started_at
    )
    purposes = [c.purpose for c in calls]
    last_compaction = max(i for i, p in enumerate(purposes) if p is CallPurpose.compaction)
    second_turn = [i for i, p in enumerate(purposes) if p is CallPurpose.delegate][1]
    assert last_compaction < second_turn
    assert "summary" in result.answer


async def test_resume_counts_a_turn_that_made_no_task_towards_max_turns(tmp_path: Path) -> None:
    """Turn 2 only called a worker that does not exist, and the budget stopped the run:
    on resume that turn still counts, so the run takes at most ``max_turns`` in all."""

    def answer(request: ModelRequest) -> Any:
        if request.tool_choice == "none":
            return "the answer"
        if turn_of(request) == 1:
            return [delegate("researcher", "a")]
        return [ToolCall(id="", name="ghost", arguments={"instructions": "x"})]

    store = SQLiteStore(tmp_path / "runs.db")
    first = ScriptedModel(lambda r: answer(r) if r.tools else "out:a")
    stopped = await Orchestrator(
        team(), model=first, mode="delegate", max_turns=3, store=store, budget=Budget(max_calls=3)
    ).run("r")
    assert stopped.status is RunStatus.over_budget
    then = ScriptedModel(lambda r: answer(r) if r.tools else "out:a")
    done = await Orchestrator(team(), model=then, mode="delegate", max_turns=3, store=store).resume(
        stopped.run_id, budget=Budget(max_calls=50)
    )
    calls = await store.list_calls(run_id=stopped.run_id)
    assert done.status is RunStatus.succeeded
    assert sum(c.purpose is CallPurpose.delegate for c in calls) == 3  # max_turns, in all
    await store.aclose()
