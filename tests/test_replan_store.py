"""Plan versions in stores older than replanning, and revisions in the live view."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from rich.console import Console

from foreman import events as ev
from foreman.cli.render import LiveProgress
from foreman.errors import StoreError
from foreman.models.base import Usage
from foreman.results import RunStatus
from foreman.store.base import Store
from foreman.store.memory import MemoryStore
from foreman.store.migrations import MIGRATIONS
from foreman.store.sqlite import SQLiteStore
from foreman.testing.store_conformance import StoreConformance
from foreman.testing.store_conformance.records import plan, run_record
from helpers import plan_of, task
from replan_helpers import KEEP, add, model, orchestrator, replan_requests, states, worker_calls


async def test_a_database_of_schema_4_keeps_its_plans_as_first_versions(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path, isolation_level=None) as connection:
        for script in MIGRATIONS[:4]:
            connection.executescript(script)
        connection.execute("PRAGMA user_version = 4")
        connection.execute(
            "INSERT INTO runs (run_id, request, status, settings, created_at, updated_at)"
            " VALUES ('old', 'q', 'partial', '{}', 1.0, 2.0)"
        )
        connection.execute(
            "INSERT INTO plans (run_id, version, plan, input_tokens, output_tokens, created_at)"
            " VALUES ('old', 1, ?, 7, 3, 1.0)",
            (plan("t1").model_dump_json(),),
        )
    connection.close()
    store = SQLiteStore(path)
    try:
        [version] = await store.list_plans("old")
        assert (version.version, version.plan, version.reason) == (1, plan("t1"), None)
        assert version.usage == Usage(input_tokens=7, output_tokens=3)
        assert version.changes.added == version.changes.changed == version.changes.dropped == []
    finally:
        await store.aclose()


class OlderStore(MemoryStore):
    """A store written before revisions: the ``Store`` defaults of the new methods."""

    save_revision = Store.save_revision
    list_plans = Store.list_plans


async def test_a_store_without_revisions_still_runs_a_replanning_run() -> None:
    store = OlderStore()
    revise = lambda m: add(("t3", "writer", ["t1"])) if "t3" not in states(m) else KEEP  # noqa: E731
    scripted = model(plan_of(task("t1"), task("t2", "writer", "t1")), revise)
    result = await orchestrator(scripted, store=store).run("req")
    assert result.status is RunStatus.succeeded
    record = await store.get_run(result.run_id)
    assert (record.plan_version, len(record.plan.tasks)) == (2, 3)  # resume would see t3
    [latest] = await store.list_plans(result.run_id)  # all the default knows
    assert (latest.version, latest.reason) == (2, None)


async def test_older_store_defaults_without_a_plan() -> None:
    store = OlderStore()
    await store.create_run(run_record())
    assert await store.list_plans("run-1") == []


def test_the_live_view_follows_the_revised_plan() -> None:
    progress = LiveProgress(Console(record=True, width=120))
    first = plan_of(task("t1"), task("t2", "writer", "t1"))
    progress.handle(ev.PlanReady(run_id="r", plan=first, usage=Usage()))
    progress.handle(ev.TaskStarted(run_id="r", task_id="t1", worker="researcher"))
    revised = plan_of(task("t1"), task("t3", "coder", "t1"))
    progress.handle(
        ev.PlanRevised(
            run_id="r",
            version=2,
            reason="why",
            added=["t3"],
            changed=[],
            dropped=["t2"],
            plan=revised,
        )
    )
    assert progress.status == {"t1": "running", "t3": "pending"}
    assert progress.note["t3"] == "added in plan v2"
    progress.handle(ev.ReplanStalled(run_id="r", reason="2 revisions in a row added nothing"))
    assert progress.headline.startswith("Replanning stalled: 2 revisions")


class TestOlderStoreConformance(StoreConformance):
    """The suite passes a store with the defaults: the revision checks are skipped."""

    def make_store(self, tmp_path: Path) -> Store:
        return OlderStore()


class FailingRevisions(MemoryStore):
    async def save_revision(self, *args: object, **kwargs: object) -> int:
        raise StoreError("the disk is full")


async def test_a_revision_the_store_cannot_keep_fails_the_run_and_its_tasks_never_start() -> None:
    store = FailingRevisions()
    scripted = model(plan_of(task("t1")), lambda m: add(("t2", "writer", ["t1"])))
    with pytest.raises(StoreError, match="the disk is full"):
        await orchestrator(scripted, store=store).run("req")
    [summary] = await store.list_runs()
    assert summary.status is RunStatus.failed and "the disk is full" in summary.error
    assert worker_calls(scripted) == ["do t1"]  # t2 was never stored, so never ran


async def test_traces_carry_revisions_and_their_calls() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from foreman.tracing.otel import OTelObserver

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    answers = iter(["no json", add(("t3", "writer", ["t1"]))])
    revise = lambda m: next(answers) if "t3" not in states(m) else KEEP  # noqa: E731
    scripted = model(plan_of(task("t1"), task("t2", "writer", "t1")), revise)
    await orchestrator(scripted, observers=[OTelObserver(provider)]).run("req")
    spans = exporter.get_finished_spans()
    [root] = [s for s in spans if s.name == "foreman.run"]
    [revised] = [e for e in root.events if e.name == "plan_revised"]
    assert [e.name for e in root.events].count("plan_rejected") == 1  # the refused one
    assert revised.attributes["foreman.plan_version"] == 2
    assert list(revised.attributes["foreman.added"]) == ["t3"]
    assert [s.name for s in spans].count("foreman.plan") == 1
    replans = [s for s in spans if s.attributes.get("foreman.purpose") == "replan"]
    assert len(replans) == len(replan_requests(scripted)) >= 2
    assert all(s.parent.span_id == root.context.span_id for s in replans)
