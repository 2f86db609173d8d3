"""The dashboard's JSON API (what the page uses, and scripts can): over a SQLite store
holding real runs, through FastAPI's test client. Decisions must do what ``foreman
approve`` / ``reject`` do, on the same store, and cover only the input that was shown."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from foreman import Orchestrator
from foreman.ledger.budget import Budget
from foreman.ledger.stats import group_calls
from foreman.models.base import ToolCall
from foreman.plan.revise import PlanChanges
from foreman.store.base import Approval, RunRecord
from foreman.store.memory import MemoryStore
from foreman.store.sqlite import SQLiteStore
from foreman.testing import ScriptedModel
from foreman.tools import Toolbox, tool
from foreman.web.app import create_app
from foreman.web.live import ChangeFeed
from foreman.workers import Registry
from foreman.workers.nested import TeamWorker
from foreman.workers.spec import RiskLevel
from helpers import Script, plan_of, task, worker

BASE = "http://127.0.0.1:8765"
DECIDE = {"X-Foreman-Request": "1"}
HOSTILE = "<script>alert(1)</script>"


def make_runs(path) -> dict[str, str]:
    """Two runs: one succeeded (t1 -> t2, a hostile output), one waiting for the
    approval of its high-risk t2."""

    async def make() -> dict[str, str]:
        store = SQLiteStore(path)
        team = Registry(
            [worker("researcher"), worker("writer"), worker("deployer", risk=RiskLevel.high)]
        )
        try:
            done = await Orchestrator(
                team,
                model=ScriptedModel(
                    Script(
                        plan_of(task("t1", "researcher"), task("t2", "writer", "t1")),
                        tasks={"do t1": HOSTILE},
                    )
                ),
                store=store,
            ).run("write a report")
            waiting = await Orchestrator(
                team,
                model=ScriptedModel(
                    Script(plan_of(task("t1", "researcher"), task("t2", "deployer", "t1")))
                ),
                store=store,
            ).run("deploy the service")
            return {"done": done.run_id, "waiting": waiting.run_id}
        finally:
            await store.aclose()

    return asyncio.run(make())


@pytest.fixture
def runs(tmp_path) -> dict[str, str]:
    return make_runs(tmp_path / "runs.db")


@pytest.fixture
def client(tmp_path, runs):
    store = SQLiteStore(tmp_path / "runs.db", create=False)
    with TestClient(create_app(store, close_store=True), base_url=BASE) as opened:
        yield opened


def get(client: TestClient, path: str) -> dict:
    response = client.get(path)
    assert response.status_code == 200, response.text
    return response.json()


def test_runs_filter_by_status_and_search_the_request(client, runs) -> None:
    listed = get(client, "/api/runs")["runs"]
    assert [run["run_id"] for run in listed] == [runs["waiting"], runs["done"]]
    assert listed[1]["status"] == "succeeded" and listed[1]["tasks_done"] == 2
    assert listed[1]["input_tokens"] > 0
    waiting = get(client, "/api/runs?status=waiting_approval")["runs"]
    assert [run["run_id"] for run in waiting] == [runs["waiting"]]
    found = get(client, "/api/runs?q=REPORT")["runs"]
    assert [run["run_id"] for run in found] == [runs["done"]]
    assert get(client, "/api/runs?q=nothing-like-it")["runs"] == []


def test_a_run_with_its_plan_versions_task_states_and_calls(client, runs) -> None:
    view = get(client, f"/api/runs/{runs['waiting']}")
    assert view["run"]["status"] == "waiting_approval"
    assert [p["version"] for p in view["plans"]] == [1]
    assert [t["id"] for t in view["plans"][0]["plan"]["tasks"]] == ["t1", "t2"]
    states = {t["task_id"]: t["status"] for t in view["tasks"]}
    assert states == {"t1": "succeeded", "t2": "waiting"}
    assert [a["task_id"] for a in view["approvals"]] == ["t2"]
    assert view["children"] == [] and view["path"] == [runs["waiting"]]
    assert get(client, "/api/runs/last")["run"]["run_id"] == runs["waiting"]

    calls = get(client, f"/api/runs/{runs['done']}/calls")["calls"]
    assert [c["purpose"] for c in calls] == ["plan", "task", "task", "synthesis"]
    assert all(c["prompt"] is None for c in calls)  # the timeline needs no prompts


def test_a_task_with_its_input_output_calls_and_prompts(client, runs) -> None:
    view = get(client, f"/api/runs/{runs['done']}/tasks/t1")
    assert view["task"]["instructions"] == "do t1"
    assert view["result"]["output"] == HOSTILE  # as data: the page shows it as text
    [call] = view["calls"]
    assert call["output"] == HOSTILE and call["prompt"]["messages"]
    assert view["books"]["calls"] == 1
    assert view["books"]["input_tokens"] == call["usage"]["input_tokens"]
    assert HOSTILE in get(client, f"/api/runs/{runs['done']}/tasks/t2")["result"]["input"]


def test_stats_are_the_ledgers_groups(client, runs, tmp_path) -> None:
    async def ledger():
        store = SQLiteStore(tmp_path / "runs.db")
        try:
            return await store.list_calls()
        finally:
            await store.aclose()

    records = asyncio.run(ledger())
    for by in ("worker", "model", "day", "run"):
        stats = get(client, f"/api/stats?by={by}")
        assert stats["groups"] == [g.as_json() for g in group_calls(records, by)]
        assert stats["total"]["calls"] == len(records)
    one = get(client, f"/api/stats?run={runs['done']}")
    assert one["total"]["calls"] == 4


def test_errors_are_one_line(client) -> None:
    unknown = client.get("/api/runs/no-such-run")
    assert unknown.status_code == 404 and "No run 'no-such-run'" in unknown.json()["error"]
    bad_by = client.get("/api/stats?by=hour")
    assert bad_by.status_code == 422 and bad_by.json()["error"].startswith("by: ")
    bad_status = client.get("/api/runs?status=sleeping")
    assert bad_status.status_code == 400 and "sleeping" in bad_status.json()["error"]
    no_task = client.get("/api/runs/last/tasks/t9")
    assert no_task.status_code == 404 and "t9" in no_task.json()["error"]


def test_approve_decides_on_the_store_only_for_the_input_shown(client, runs, tmp_path) -> None:
    [pending] = get(client, "/api/approvals")["approvals"]
    assert pending["inputs_sha256"] == hashlib.sha256(pending["inputs"].encode()).hexdigest()
    url = f"/api/runs/{runs['waiting']}/tasks/t2/approve"
    stale = client.post(url, json={"inputs_sha256": "0" * 64}, headers=DECIDE)
    assert stale.status_code == 409 and "changed since it was shown" in stale.json()["error"]

    body = {"inputs_sha256": pending["inputs_sha256"], "note": "ok by me"}
    decided = client.post(url, json=body, headers=DECIDE)
    assert decided.status_code == 200, decided.text
    assert decided.json()["message"] == (
        f"Task t2 of run {runs['waiting']} approved. "
        f"Continue it with: foreman resume {runs['waiting']}"
    )

    async def stored():
        store = SQLiteStore(tmp_path / "runs.db")
        try:
            return await store.get_approval(runs["waiting"], "t2")
        finally:
            await store.aclose()

    approval = asyncio.run(stored())
    assert (approval.status.value, approval.note) == ("approved", "ok by me")
    again = client.post(url, json=body, headers=DECIDE)
    assert again.status_code == 409  # nothing pending: as `foreman approve` says
    assert get(client, "/api/approvals")["approvals"] == []
    assert [a["status"] for a in get(client, "/api/approvals?all=true")["approvals"]] == [
        "approved"
    ]


def test_reject_needs_a_reason(client, runs) -> None:
    [pending] = get(client, "/api/approvals")["approvals"]
    url = f"/api/runs/{runs['waiting']}/tasks/t2/reject"
    digest = pending["inputs_sha256"]
    silent = client.post(url, json={"inputs_sha256": digest, "note": "  "}, headers=DECIDE)
    assert silent.status_code == 409 and "reason" in silent.json()["error"]
    body = {"inputs_sha256": digest, "note": "not on a Friday"}
    rejected = client.post(url, json=body, headers=DECIDE)
    assert rejected.status_code == 200
    assert rejected.json()["approval"]["status"] == "rejected"
    assert rejected.json()["approval"]["note"] == "not on a Friday"


async def test_the_change_feed_hears_another_connection(tmp_path, runs) -> None:
    """A write by another connection (as by another process) reaches an open stream."""
    watched = SQLiteStore(tmp_path / "runs.db", create=False)
    writer = SQLiteStore(tmp_path / "runs.db")
    feed = ChangeFeed(watched, interval=0.01)
    stream = feed.stream()
    try:
        hello = await anext(stream)
        assert hello.startswith("retry: 1000\nevent: hello\n")
        before = await watched.change_marker()
        assert await watched.change_marker() == before  # nothing changed, nothing moves
        await writer.cancel_run(runs["waiting"])
        change = await asyncio.wait_for(anext(stream), 30)
        assert change.startswith("event: change\n")
        assert json.loads(change.split("data: ", 1)[1])["version"] == 1
        assert await watched.change_marker() != before
    finally:
        await stream.aclose()
        await feed.aclose()
        await watched.aclose()
        await writer.aclose()


async def test_an_own_write_moves_the_marker_too(tmp_path, runs) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    try:
        before = await store.change_marker()
        await store.cancel_run(runs["waiting"])
        assert await store.change_marker() != before
    finally:
        await store.aclose()


def test_runs_name_the_budget_limit_a_run_reached_as_foreman_runs_json_does() -> None:
    store = MemoryStore()
    plan = plan_of(task("t1"), task("t2"))
    stopped = asyncio.run(
        Orchestrator(
            Registry([worker("researcher")]),
            model=ScriptedModel(Script(plan)),
            store=store,
            budget=Budget(max_calls=1),
        ).run("two things", plan=plan)
    )
    assert stopped.status.value == "over_budget"
    with TestClient(create_app(store), base_url=BASE) as opened:
        (listed,) = get(opened, "/api/runs")["runs"]
    assert (listed["status"], listed["budget_limit"]) == ("over_budget", "max_calls")


def test_a_missing_store_is_an_empty_dashboard(tmp_path) -> None:
    store = SQLiteStore(tmp_path / "absent.db", create=False)
    with TestClient(create_app(store, close_store=True), base_url=BASE) as opened:
        assert get(opened, "/api/runs") == {"runs": []}
        assert get(opened, "/api/approvals") == {"approvals": []}
    assert not (tmp_path / "absent.db").exists()
    assert os.environ["FOREMAN_DB"] != str(tmp_path / "absent.db")


def test_nested_runs_sit_inside_their_parent(tmp_path) -> None:
    """A team worker's task runs as a nested run: listed inside its parent, with its place
    in the hierarchy, and an approval deep inside names the top-level run to resume."""

    async def make() -> str:
        store = SQLiteStore(tmp_path / "nested.db")
        model = ScriptedModel(Script(plan_of(task("c1", "checker"), task("c2", "publisher", "c1"))))
        child = Orchestrator(
            [worker("checker"), worker("publisher", risk=RiskLevel.medium)], model=model
        )
        review = TeamWorker(name="review", description="Reviews and publishes.", team=child)
        top = Orchestrator([worker("researcher"), review], model=model, store=store)
        try:
            plan = plan_of(task("t1", "researcher"), task("t2", "review", "t1"))
            return (await top.run("Write and publish", plan=plan)).run_id
        finally:
            await store.aclose()

    top_id = asyncio.run(make())
    nested_id = f"{top_id}.t2"
    store = SQLiteStore(tmp_path / "nested.db", create=False)
    with TestClient(create_app(store, close_store=True), base_url=BASE) as opened:
        assert [r["run_id"] for r in get(opened, "/api/runs")["runs"]] == [top_id]
        every = get(opened, "/api/runs?nested=true")["runs"]
        assert {r["run_id"] for r in every} == {top_id, nested_id}
        top = get(opened, f"/api/runs/{top_id}")
        assert [c["run_id"] for c in top["children"]] == [nested_id]
        assert top["children"][0]["parent_task_id"] == "t2"
        inner = get(opened, f"/api/runs/{nested_id}")
        assert inner["path"] == [top_id, nested_id]
        assert {t["task_id"]: t["status"] for t in inner["tasks"]}["c2"] == "waiting"
        t2 = get(opened, f"/api/runs/{top_id}/tasks/t2")
        assert [r["run_id"] for r in t2["nested_runs"]] == [nested_id]
        # The task carried out by the nested run has that run's books, as `show` says.
        spent = inner["run"]["calls"], inner["run"]["usage"]["input_tokens"]
        state = {t["task_id"]: t for t in top["tasks"]}["t2"]
        assert (state["calls"], state["input_tokens"]) == spent and spent[0] > 0
        assert (t2["books"]["calls"], t2["books"]["input_tokens"]) == spent

        [pending] = get(opened, "/api/approvals")["approvals"]
        assert pending["run_path"] == [top_id, nested_id]
        decided = opened.post(
            f"/api/runs/{nested_id}/tasks/c2/approve",
            json={"inputs_sha256": pending["inputs_sha256"]},
            headers=DECIDE,
        )
        assert decided.json()["message"] == (
            f"Task c2 of run {nested_id} approved. "
            f"Continue it with: foreman resume {top_id} (nested in run {top_id})"
        )


def test_for_each_items_are_tasks_of_their_own(tmp_path) -> None:
    class Files(BaseModel):
        files: list[str]

    async def make() -> str:
        store = SQLiteStore(tmp_path / "items.db")
        team = Registry([worker("lister", output_schema=Files), worker("researcher")])
        answer = json.dumps({"files": [f"f{n}" for n in range(12)]})
        plan = plan_of(task("t1", "lister"), task("t2", "researcher", "t1", for_each="t1.files"))
        model = ScriptedModel(Script(tasks={"do t1": answer}))
        try:
            return (await Orchestrator(team, model=model, store=store).run("x", plan=plan)).run_id
        finally:
            await store.aclose()

    run_id = asyncio.run(make())
    store = SQLiteStore(tmp_path / "items.db", create=False)
    with TestClient(create_app(store, close_store=True), base_url=BASE) as opened:
        tasks = get(opened, f"/api/runs/{run_id}")["tasks"]
        ids = [t["task_id"] for t in tasks]
        assert ids == ["t1", "t2", *[f"t2.{n}" for n in range(1, 13)]]  # t2.10 after t2.9
        assert {t["item_of"] for t in tasks[2:]} == {"t2"}
        assert all(t["status"] == "succeeded" and t["calls"] == 1 for t in tasks[2:])
        assert get(opened, f"/api/runs/{run_id}/tasks/t2")["items"] == ids[2:]
        assert get(opened, f"/api/runs/{run_id}/tasks/t2.10")["task"]["worker"] == "researcher"


async def test_the_default_change_marker_sees_runs_and_approvals_change() -> None:
    """What a store without a cheaper signal (the memory store, a store of your own) gets."""
    store = MemoryStore()
    first = await store.change_marker()
    assert await store.change_marker() == first
    await store.create_run(RunRecord(run_id="r1", request="x"))
    second = await store.change_marker()
    assert second != first
    await store.request_approval(
        Approval(run_id="r1", task_id="t1", worker="w", risk="high", instructions="i", inputs="")
    )
    third = await store.change_marker()
    assert third != second
    await store.decide("r1", "t1", approved=True, note=None)
    assert await store.change_marker() != third


def test_every_plan_version_with_its_reason(tmp_path) -> None:
    async def make() -> None:
        store = SQLiteStore(tmp_path / "plans.db")
        try:
            await store.create_run(RunRecord(run_id="r1", request="grow"))
            await store.save_plan("r1", plan_of(task("t1")))
            await store.save_revision(
                "r1",
                plan_of(task("t1"), task("t2", "writer", "t1")),
                reason="t1 found more to write",
                changes=PlanChanges(added=["t2"]),
            )
        finally:
            await store.aclose()

    asyncio.run(make())
    store = SQLiteStore(tmp_path / "plans.db", create=False)
    with TestClient(create_app(store, close_store=True), base_url=BASE) as opened:
        view = get(opened, "/api/runs/r1")
        first, second = view["plans"]
        assert (first["version"], first["reason"]) == (1, None)
        assert (second["version"], second["reason"]) == (2, "t1 found more to write")
        assert second["changes"]["added"] == ["t2"]
        assert [t["task_id"] for t in view["tasks"]] == ["t1", "t2"]  # the latest plan's


def test_tool_calls_and_their_approvals(tmp_path) -> None:
    """A worker's tool calls are on its run's timeline and in its task, and a tool call
    that asks (``t1#2``) is approved like a task, covering its exact arguments."""

    @tool
    def fetch(url: str) -> str:
        """Fetch a page."""
        return HOSTILE

    @tool(risk="high")
    def send_email(to: str) -> str:
        """Send an email."""
        return "sent"

    registry = Registry(
        [worker("calc", tools=("fetch", "send_email"))], tools=Toolbox([fetch, send_email])
    )
    plan = plan_of(task("t1", "calc"))
    turns = [[ToolCall(id="", name="fetch", arguments={"url": "u"})]]
    turns += [[ToolCall(id="", name="send_email", arguments={"to": "a@b.c"})], "done"]

    def answer(request):
        return turns[sum(message.role == "assistant" for message in request.messages)]

    async def execute(resume: str | None = None) -> str:
        store = SQLiteStore(tmp_path / "tools.db")
        model = ScriptedModel(Script(plan, tasks={"do t1": answer}))
        orchestrator = Orchestrator(registry, model=model, store=store, assembly="concat")
        try:
            if resume:
                return (await orchestrator.resume(resume)).status.value
            return (await orchestrator.run("mail it", plan=plan)).run_id
        finally:
            await store.aclose()

    run_id = asyncio.run(execute())
    store = SQLiteStore(tmp_path / "tools.db", create=False)
    with TestClient(create_app(store, close_store=True), base_url=BASE) as opened:
        [state] = get(opened, f"/api/runs/{run_id}")["tasks"]
        assert state["status"] == "waiting"
        [fetched] = get(opened, f"/api/runs/{run_id}/calls")["tool_calls"]
        assert (fetched["key"], fetched["tool"], fetched["outcome"]) == ("t1#1", "fetch", "ok")
        assert fetched["result"] == HOSTILE

        [pending] = get(opened, "/api/approvals")["approvals"]
        assert (pending["task_id"], pending["tool"]) == ("t1#2", "send_email")
        assert pending["arguments"] == {"to": "a@b.c"}
        assert [a["task_id"] for a in get(opened, f"/api/runs/{run_id}/tasks/t1")["approvals"]] == [
            "t1#2"
        ]
        decided = opened.post(
            f"/api/runs/{run_id}/tasks/t1%232/approve",
            json={"inputs_sha256": pending["inputs_sha256"]},
            headers=DECIDE,
        )
        assert decided.status_code == 200, decided.text
        assert decided.json()["approval"]["status"] == "approved"

        assert asyncio.run(execute(resume=run_id)) == "succeeded"
        view = get(opened, f"/api/runs/{run_id}/tasks/t1")
        assert [(t["key"], t["outcome"]) for t in view["tool_calls"]] == [
            ("t1#1", "ok"),
            ("t1#2", "ok"),
        ]
