"""CLI options must reach the run: --concurrency, --planner-model, resume --model,
--auto-approve. Each is observed by its effect on scripted models, never by reading back
the option itself.

Every model name the CLI resolves is served by its own ScriptedModel (``models[name]``),
so a test can tell which model each call went to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from foreman.cli import app
from foreman.errors import ModelError
from foreman.testing import ScriptedModel
from helpers import (
    Script,
    instructions_of,
    is_planner,
    is_synthesis,
    plan_of,
    task,
    worker_requests,
)

runner = CliRunner()


class Models(dict):
    """name -> ScriptedModel, built on first use by ``factory(name)``."""

    def __init__(self, factory: Callable[[str], ScriptedModel]) -> None:
        super().__init__()
        self.factory = factory
        self.asked: list[str | None] = []

    def load(self, name: str | None = None) -> ScriptedModel:
        self.asked.append(name)
        if name not in self:
            self[name] = self.factory(name)
        return self[name]


@pytest.fixture
def models(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[str], Any]], Models]:
    """Route every model name the CLI loads to a per-name scripted model."""
    monkeypatch.delenv("FOREMAN_MODEL", raising=False)

    def use(factory: Callable[[str], ScriptedModel]) -> Models:
        pool = Models(factory)
        monkeypatch.setattr("foreman.models.pool.load_model", pool.load)
        return pool

    return use


def planner_calls(model: ScriptedModel) -> int:
    return sum(1 for request in model.requests if is_planner(request))


def run_id_of(output: str) -> str:
    for line in output.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("type") == "run_started":
                return event["run_id"]
    raise AssertionError(f"no run_started event in: {output}")


# --- --concurrency -------------------------------------------------------------------------

WIDE = plan_of(*(task(f"t{i}") for i in range(1, 6)))


class Gate(ScriptedModel):
    """Holds worker calls until ``expect`` are in flight at once, then lets them all go.

    No timing: with a limit of ``expect`` the calls meet and proceed; a limit that is too
    low never fills the gate (it gives up after ``patience`` s and the count shows it);
    one that is too high lets extra calls in before the held ones finish.
    """

    def __init__(self, script: Script, expect: int, patience: float = 5.0, **kwargs) -> None:
        super().__init__(script, **kwargs)
        self.expect, self.patience = expect, patience
        self.in_flight = self.max_in_flight = 0
        self.full = asyncio.Event()

    async def complete(self, request):
        if is_planner(request) or is_synthesis(request):
            return await super().complete(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.in_flight >= self.expect:
                self.full.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.patience):
                    await self.full.wait()
            await asyncio.sleep(0)  # any call the limit wrongly allows starts now
            return await super().complete(request)
        finally:
            self.in_flight -= 1


@pytest.mark.parametrize("limit", [1, 2, 4])
def test_concurrency_bounds_the_tasks_running_at_once(models, limit: int) -> None:
    pool = models(lambda name: Gate(Script(WIDE), limit, name=name))

    result = runner.invoke(
        app, ["run", "x", "-m", "m", "--concurrency", str(limit), "--assembly", "concat"]
    )

    assert result.exit_code == 0, result.output
    assert len(worker_requests(pool["m"])) == 5
    assert pool["m"].max_in_flight == limit


# --- --planner-model -----------------------------------------------------------------------

PLAN = plan_of(task("t1", "researcher"), task("t2", "writer", "t1"))


def test_run_planner_model_gets_the_planning_call_and_only_it(models) -> None:
    pool = models(lambda name: ScriptedModel(Script(PLAN), name=name))

    result = runner.invoke(
        app, ["run", "x", "-m", "cheap", "--planner-model", "strong", "--assembly", "concat"]
    )

    assert result.exit_code == 0, result.output
    assert planner_calls(pool["strong"]) == 1
    assert len(pool["strong"].requests) == 1
    assert planner_calls(pool["cheap"]) == 0
    assert sorted(instructions_of(r) for r in worker_requests(pool["cheap"])) == [
        "do t1",
        "do t2",
    ]


def test_plan_planner_model_gets_the_planning_call(models) -> None:
    pool = models(lambda name: ScriptedModel(Script(PLAN), name=name))

    result = runner.invoke(app, ["plan", "x", "-m", "cheap", "--planner-model", "strong"])

    assert result.exit_code == 0, result.output
    assert planner_calls(pool["strong"]) == 1
    assert "cheap" not in pool or pool["cheap"].requests == []


def test_without_planner_model_the_default_model_plans(models) -> None:
    pool = models(lambda name: ScriptedModel(Script(PLAN), name=name))

    result = runner.invoke(app, ["run", "x", "-m", "cheap", "--assembly", "concat"])

    assert result.exit_code == 0, result.output
    assert planner_calls(pool["cheap"]) == 1


# --- resume --model ------------------------------------------------------------------------

ABORTING_TEAM = """
workers:
  - name: researcher
    description: Finds facts.
    system_prompt: You are a researcher.
    on_failure: abort
"""


def aborted_run(models, tmp_path) -> tuple[Models, str, list[str]]:
    """A run on model 'first' whose only task failed and aborted it; its id and team args."""
    team = tmp_path / "team.yaml"
    team.write_text(ABORTING_TEAM)
    plan = plan_of(task("t1", "researcher"))

    def factory(name: str) -> ScriptedModel:
        if name == "first":
            return ScriptedModel(Script(plan, tasks={"do t1": ModelError("400 first is broken")}))
        return ScriptedModel(Script(plan), name=name)

    pool = models(factory)
    args = ["--team", str(team)]
    result = runner.invoke(app, ["run", "x", "-m", "first", *args, "--json"])
    assert result.exit_code == 4, result.output
    return pool, run_id_of(result.output), args


def stored_task(run_id: str, task_id: str) -> Any:
    from foreman.store import SQLiteStore

    async def load() -> Any:
        store = SQLiteStore(os.environ["FOREMAN_DB"])
        try:
            return (await store.load_tasks(run_id))[task_id]
        finally:
            await store.aclose()

    return asyncio.run(load())


def test_resume_model_replaces_the_runs_default_model(models, tmp_path) -> None:
    pool, run_id, _ = aborted_run(models, tmp_path)
    first_calls = len(pool["first"].requests)

    result = runner.invoke(app, ["resume", run_id, "--model", "second"])

    assert result.exit_code == 0, result.output
    assert len(pool["first"].requests) == first_calls  # not asked again
    assert [instructions_of(r) for r in worker_requests(pool["second"])] == ["do t1"]
    assert stored_task(run_id, "t1").model == "second"


def test_resume_without_model_reuses_the_recorded_one(models, tmp_path) -> None:
    pool, run_id, _ = aborted_run(models, tmp_path)

    result = runner.invoke(app, ["resume", run_id])

    assert result.exit_code == 4, result.output  # 'first' is still broken
    assert "second" not in pool
    assert len(worker_requests(pool["first"])) == 2


# --- --auto-approve ------------------------------------------------------------------------

RISKY_TEAM = """
workers:
  - name: editor
    description: Edits things.
    system_prompt: You are an editor.
    risk: medium
  - name: deployer
    description: Deploys things.
    system_prompt: You are a deployer.
    risk: high
"""
RISKY = plan_of(task("t1", "editor"), task("t2", "deployer"))


@pytest.mark.parametrize(("level", "ran"), [(None, []), ("low", []), ("medium", ["do t1"])])
def test_auto_approve_option_reaches_the_run(models, tmp_path, level, ran) -> None:
    team = tmp_path / "team.yaml"
    team.write_text(RISKY_TEAM)
    pool = models(lambda name: ScriptedModel(Script(RISKY), name=name))
    extra = ["--auto-approve", level] if level else []

    result = runner.invoke(app, ["run", "x", "-m", "m", "--team", str(team), *extra])

    assert result.exit_code == 5, result.output  # t2 (high risk) always waits
    assert [instructions_of(r) for r in worker_requests(pool["m"])] == ran
