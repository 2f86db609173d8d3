"""A budget raised on resume becomes the run's own: a later resume without flags keeps it
(``Store.update_settings``); a store without that method keeps the old behaviour."""

from __future__ import annotations

import asyncio
import logging
import os

import pytest
from typer.testing import CliRunner

from foreman import Budget, Orchestrator, RunStatus
from foreman.cli import app
from foreman.store.base import Store
from foreman.store.memory import MemoryStore
from foreman.store.sqlite import SQLiteStore
from foreman.testing import ScriptedModel
from foreman.workers.registry import Registry
from helpers import Script, plan_of, task, worker

runner = CliRunner()
TEAM = Registry([worker("researcher"), worker("writer")])
FAN = plan_of(task("t1"), task("t2"), task("t3"), task("t4", "writer", "t1"))


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> ScriptedModel:
    model = ScriptedModel(Script(FAN, synthesis="THE ANSWER"), name="boss")
    monkeypatch.setattr("foreman.models.pool.load_model", lambda name=None: model)
    monkeypatch.delenv("FOREMAN_MODEL", raising=False)
    return model


def stored(run: str):
    async def read():
        store = SQLiteStore(os.environ["FOREMAN_DB"])
        try:
            return await store.get_run(await store.resolve_run(run))
        finally:
            await store.aclose()

    return asyncio.run(read())


def test_a_flagless_resume_keeps_the_budget_a_resume_raised(scripted) -> None:
    ran = runner.invoke(app, ["run", "x", "--budget-calls", "2", "--concurrency", "1"])
    assert ran.exit_code == 6, ran.output
    run_id = "last"

    raised = runner.invoke(app, ["resume", run_id, "--budget-calls", "3"])
    assert raised.exit_code == 6, raised.output
    assert stored(run_id).settings["budget"]["max_calls"] == 3
    again = runner.invoke(app, ["resume", run_id])  # no flags: still the raised budget
    assert again.exit_code == 6, again.output
    assert "calls 3 >= max_calls 3" in (stored(run_id).error or "")
    assert len(scripted.requests) == 3

    done = runner.invoke(app, ["resume", run_id, "--budget-calls", "20"])
    assert done.exit_code == 0, done.output
    assert stored(run_id).settings["budget"]["max_calls"] == 20


async def test_resume_with_a_budget_records_it_and_a_later_cli_resume_uses_it(
    scripted, tmp_path
) -> None:
    store = SQLiteStore(os.environ["FOREMAN_DB"])
    try:
        o = Orchestrator(TEAM, model=scripted, store=store, budget=Budget(max_calls=2))
        first = await o.run("x")
        assert first.status is RunStatus.over_budget
        again = await o.resume(first.run_id, budget=Budget(max_calls=3))
        assert again.status is RunStatus.over_budget and again.calls == 3
        record = await store.get_run(first.run_id)
        assert record.settings["budget"] == Budget(max_calls=3).model_dump()
        assert record.settings["model"] == o.settings["model"]  # the rest is kept
    finally:
        await store.aclose()


class OldStore(MemoryStore):
    """A store written before ``update_settings`` existed."""

    update_settings = Store.update_settings


async def test_a_store_without_update_settings_still_resumes_under_the_raised_budget(
    caplog,
) -> None:
    model = ScriptedModel(Script(FAN, synthesis="THE ANSWER"))
    store = OldStore()
    o = Orchestrator(TEAM, model=model, store=store, budget=Budget(max_calls=2), concurrency=1)
    first = await o.run("x")
    with caplog.at_level(logging.WARNING, logger="foreman"):
        done = await o.resume(first.run_id, budget=Budget(max_calls=20))
    assert done.status is RunStatus.succeeded
    assert (await store.get_run(first.run_id)).settings["budget"]["max_calls"] == 2
    assert "cannot record the raised budget" in caplog.text
