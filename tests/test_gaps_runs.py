"""Plans given by the caller, placeholder checks, resuming finished runs, and the listing
commands' options (`approvals --all`, `show --full`)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from typer.testing import CliRunner

from foreman import Orchestrator
from foreman.cli import app
from foreman.errors import ModelError, PlanError, RunFinishedError
from foreman.events import PlanRejected
from foreman.plan import Plan, validate_plan
from foreman.results import RunStatus, TaskStatus
from foreman.store import MemoryStore, SQLiteStore
from foreman.testing import ScriptedModel
from foreman.workers import Registry
from helpers import Script, of_type, plan_json, plan_of, task, worker, worker_requests

runner = CliRunner()
TEAM = Registry([worker("researcher"), worker("writer"), worker("deployer", risk="high")])


def orchestrator(model: ScriptedModel, store: Any = None, **kwargs: Any) -> Orchestrator:
    kwargs.setdefault("assembly", "concat")
    return Orchestrator(TEAM, model=model, store=store or MemoryStore(), **kwargs)


@pytest.fixture
def cli_model(monkeypatch: pytest.MonkeyPatch):
    """Every model name the CLI resolves is the given scripted model."""
    holder: dict[str, ScriptedModel] = {}
    monkeypatch.setattr("foreman.models.pool.load_model", lambda name=None: holder["model"])
    monkeypatch.delenv("FOREMAN_MODEL", raising=False)
    monkeypatch.setenv("COLUMNS", "200")  # rich reads it at print time: no wrapped cells

    def use(model: ScriptedModel) -> ScriptedModel:
        holder["model"] = model
        return model

    return use


def db_store() -> SQLiteStore:
    """The store the CLI uses in tests (FOREMAN_DB, set per test by conftest)."""
    return SQLiteStore(os.environ["FOREMAN_DB"])


async def run_into_db(plan: Plan, model: ScriptedModel, **kwargs: Any) -> Any:
    async with orchestrator(model, db_store(), **kwargs) as o, asyncio.timeout(10):
        return await o.run("x", plan=plan)


# --- a given plan is not capped at max_tasks -----------------------------------------------

FIVE = plan_of(*(task(f"t{i}") for i in range(1, 6)))


async def test_a_given_plan_may_have_more_tasks_than_max_tasks() -> None:
    model = ScriptedModel(Script())
    async with asyncio.timeout(10):
        result = await orchestrator(model, max_tasks=2).run("x", plan=FIVE)

    assert result.status is RunStatus.succeeded
    assert sorted(result.tasks) == ["t1", "t2", "t3", "t4", "t5"]
    assert len(worker_requests(model)) == 5


async def test_a_planned_plan_is_still_capped_at_max_tasks() -> None:
    model = ScriptedModel(Script([FIVE, plan_of(task("t1"), task("t2"))]))
    events: list[Any] = []
    async with asyncio.timeout(10):
        plan, _ = await orchestrator(model, max_tasks=2).plan("x", on_event=events.append)

    assert [t.id for t in plan.tasks] == ["t1", "t2"]
    [rejected] = of_type(events, PlanRejected)
    assert any("limit is 2" in error for error in rejected.errors), rejected.errors


async def test_a_given_plan_is_still_validated() -> None:
    model = ScriptedModel(Script())
    bad = plan_of(task("t1", "nobody"))
    with pytest.raises(PlanError, match="nobody"):
        await orchestrator(model, max_tasks=2).run("x", plan=bad)
    assert model.requests == []


# --- placeholders ----------------------------------------------------------------------------

PLACEHOLDERS = [
    "<what this task does>",
    "<describe the task>",
    "Write <the actual instructions here> now",
]
NOT_PLACEHOLDERS = [
    "Compare <a> and <b>",
    "Escape <html> tags",
    "Use <two words> only",
    "a < b",
    "Sort so that a <b and c come first",
]


@pytest.mark.parametrize("text", PLACEHOLDERS)
def test_a_placeholder_left_in_instructions_is_an_error(text: str) -> None:
    plan = plan_of(task("t1", instructions=text))
    errors = validate_plan(plan, TEAM, max_tasks=8)
    assert len(errors) == 1
    assert "placeholder" in errors[0] and "'t1'" in errors[0]


@pytest.mark.parametrize("text", NOT_PLACEHOLDERS)
def test_angle_brackets_that_are_no_placeholder_pass(text: str) -> None:
    assert validate_plan(plan_of(task("t1", instructions=text)), TEAM, max_tasks=8) == []


async def test_a_given_plan_with_a_placeholder_does_not_run() -> None:
    model = ScriptedModel(Script())
    plan = plan_of(task("t1", instructions="<describe the first step>"))
    with pytest.raises(PlanError, match="placeholder"):
        await orchestrator(model).run("x", plan=plan)
    assert model.requests == []


async def test_the_planner_is_shown_its_placeholder_and_corrects_it() -> None:
    lazy = plan_of(task("t1", instructions="<instructions for this task>"))
    good = plan_of(task("t1", instructions="Find the facts"))
    model = ScriptedModel(Script([lazy, good]))
    events: list[Any] = []
    async with asyncio.timeout(10):
        plan, _ = await orchestrator(model).plan("x", on_event=events.append)

    assert plan == good
    [rejected] = of_type(events, PlanRejected)
    assert any("placeholder" in e for e in rejected.errors), rejected.errors
    retry = model.requests[1].messages
    assert retry[1].content == plan_json(lazy) and "placeholder" in retry[2].content


# --- a partial run is finished: resume refuses it -------------------------------------------

PARTIAL = plan_of(task("t1"), task("t2"))


async def partial_run(store: Any) -> tuple[Any, ScriptedModel]:
    model = ScriptedModel(Script(tasks={"do t1": ModelError("400 t1 is broken")}))
    async with asyncio.timeout(10):
        result = await orchestrator(model, store).run("x", plan=PARTIAL)
    assert result.status is RunStatus.partial
    return result, model


async def test_resume_refuses_a_partial_run() -> None:
    store = MemoryStore()
    result, _ = await partial_run(store)
    again = ScriptedModel(Script())

    with pytest.raises(RunFinishedError, match="partial"):
        await orchestrator(again, store).resume(result.run_id)

    assert again.requests == []
    assert (await store.get_run(result.run_id)).status is RunStatus.partial
    tasks = await store.load_tasks(result.run_id)
    assert tasks["t1"].status is TaskStatus.failed and tasks["t1"].attempts == 1


def test_cli_resume_of_a_partial_run_is_one_clear_error(cli_model) -> None:
    async def make() -> str:
        store = db_store()
        try:
            return (await partial_run(store))[0].run_id
        finally:
            await store.aclose()

    run_id = asyncio.run(make())
    model = cli_model(ScriptedModel(Script()))

    result = runner.invoke(app, ["resume", run_id])

    assert result.exit_code == 1
    assert "already finished" in result.output and "Traceback" not in result.output
    assert model.requests == []


# --- approvals --all ---------------------------------------------------------------------------

RISKY = plan_of(
    task("alpha", "deployer", instructions="deploy alpha"),
    task("beta", "deployer", instructions="deploy beta"),
)


def test_approvals_lists_pending_and_all_lists_decided_too(cli_model) -> None:
    model = ScriptedModel(Script())
    result = asyncio.run(run_into_db(RISKY, model))
    assert result.status is RunStatus.waiting_approval
    decided = runner.invoke(app, ["approve", result.run_id, "alpha", "--note", "fine by me"])
    assert decided.exit_code == 0, decided.output

    pending = runner.invoke(app, ["approvals"])
    every = runner.invoke(app, ["approvals", "--all"])

    assert pending.exit_code == 0 and every.exit_code == 0
    assert "deploy beta" in pending.output and "pending" in pending.output
    assert "deploy alpha" not in pending.output and "approved" not in pending.output
    assert "deploy alpha" in every.output and "approved" in every.output
    assert "fine by me" in every.output
    assert "deploy beta" in every.output and "pending" in every.output


def test_approvals_when_nothing_is_pending_but_some_were_decided(cli_model) -> None:
    result = asyncio.run(run_into_db(plan_of(RISKY.tasks[0]), ScriptedModel(Script())))
    runner.invoke(app, ["reject", result.run_id, "alpha", "--reason", "not today"])

    pending = runner.invoke(app, ["approvals"])
    every = runner.invoke(app, ["approvals", "--all"])

    assert "No approvals pending" in pending.output and "deploy alpha" not in pending.output
    assert "deploy alpha" in every.output and "rejected" in every.output
    assert "not today" in every.output


# --- show --full -------------------------------------------------------------------------------

LONG_FIRST_LINE = "word " * 30 + "ENDOFFIRSTLINE"
OUTPUT = f"{LONG_FIRST_LINE}\nSECONDLINEMARKER\nTHIRDLINEMARKER"


def test_show_clips_outputs_and_full_prints_them_whole(cli_model) -> None:
    model = ScriptedModel(Script(tasks={"do t1": OUTPUT}))
    result = asyncio.run(run_into_db(plan_of(task("t1")), model))

    short = runner.invoke(app, ["show", result.run_id])
    full = runner.invoke(app, ["show", result.run_id, "--full"])

    assert short.exit_code == 0 and full.exit_code == 0
    assert "word word" in short.output
    for marker in ("ENDOFFIRSTLINE", "SECONDLINEMARKER", "THIRDLINEMARKER"):
        assert marker not in short.output.split("Answer")[0], short.output
        assert marker in full.output.split("Answer")[0], full.output
