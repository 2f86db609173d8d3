"""``resume`` and ``replay`` rebuild a run's orchestrator from its recorded settings. A
model named there that cannot be built any more (its credentials are gone, say) must not
stand in the way of what needs no such model: resuming a finished run says it finished,
and a replay on another model (``-m``) runs on that model."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from typer.testing import CliRunner

from foreman.cli import app
from foreman.errors import ConfigError
from foreman.results import RunStatus, TaskResult, TaskStatus
from foreman.store.base import RunRecord
from foreman.store.sqlite import SQLiteStore
from foreman.testing import ScriptedModel
from helpers import plan_of, task

runner = CliRunner()
RUN_ID = "20261203-120000-abcdef"
GONE = "anthropic:claude-sonnet-5-5"


@pytest.fixture(autouse=True)
def only_fake_builds(monkeypatch) -> None:
    """Every model but ``fake`` fails to build, as one without its API key does."""

    def load_model(name=None):
        if name == "fake":
            return ScriptedModel(lambda request: "redone", name="fake")
        raise ConfigError(f"{name}: no credentials found.")

    monkeypatch.setattr("foreman.models.pool.load_model", load_model)


def seed(status: RunStatus) -> None:
    async def write() -> None:
        store = SQLiteStore(os.environ["FOREMAN_DB"])
        try:
            await store.create_run(RunRecord(run_id=RUN_ID, request="r", settings={"model": GONE}))
            await store.save_plan(RUN_ID, plan_of(task("t1")))
            done = TaskResult(
                task_id="t1",
                worker="researcher",
                status=TaskStatus.succeeded,
                output="first",
                attempts=1,
                input=json.dumps({"instructions": "do t1", "inputs": {}}),
            )
            await store.save_task(RUN_ID, done)
            await store.update_run(RUN_ID, status=status)
        finally:
            await store.aclose()

    asyncio.run(write())


@pytest.mark.parametrize("status", [RunStatus.succeeded, RunStatus.cancelled])
def test_resuming_a_finished_run_says_so_before_building_its_models(status) -> None:
    seed(status)
    result = runner.invoke(app, ["resume", RUN_ID])
    assert result.exit_code == 1
    assert f"already finished ({status.value}); nothing to resume" in result.output
    assert "credentials" not in result.output


def test_a_replay_on_another_model_needs_nothing_of_the_recorded_one() -> None:
    seed(RunStatus.succeeded)
    result = runner.invoke(app, ["replay", RUN_ID, "t1", "-m", "fake", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["output"] == "redone"
