"""The dashboard end to end, in a real headless browser (Debian's chromium driven by
Playwright, no download): runs are made by the real CLI in other processes, the page is
served by a real ``foreman ui`` process.

Without chromium these tests skip on a developer's machine and FAIL in CI (``CI`` set):
.ci/run installs it, so a CI without it is broken, not excused.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from cli_runs import plan
from foreman import Orchestrator
from foreman.models.base import ToolCall
from foreman.store.sqlite import SQLiteStore
from foreman.testing import ScriptedModel
from foreman.testing.dashboard import browser, chromium_problem, dashboard
from foreman.tools import Toolbox, tool
from foreman.workers import Registry
from foreman.workers.nested import TeamWorker
from helpers import Script, plan_of, task, worker
from web_runs import INJECTION, Runs

WAIT_MS = 30_000


@pytest.fixture(scope="module")
def chromium():
    if problem := chromium_problem():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"browser tests cannot run in CI: {problem}")
        pytest.skip(problem)
    with browser() as launched:
        yield launched


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert not errors, errors


def api(base: str, path: str) -> dict:
    with urllib.request.urlopen(base + path, timeout=10) as response:
        return json.loads(response.read())


def node(page, task_id: str):
    return page.locator(f'#plan-graph [data-task="{task_id}"]')


def test_a_finished_run_and_the_injection_case(tmp_path, page) -> None:
    runs = Runs(
        tmp_path,
        {
            "plan": plan(("t1", "researcher", []), ("t2", "writer", ["t1"])),
            "outputs": {"do t1": INJECTION},
        },
    )
    done = runs.run("run", f"check {INJECTION}")
    assert done.returncode == 0, done.stderr
    with dashboard(runs.db) as base:
        page.goto(base)
        row = page.locator("#runs tbody tr")
        row.first.wait_for(timeout=WAIT_MS)
        assert row.count() == 1
        assert INJECTION in row.first.locator("td.request").inner_text()
        row.first.click()
        node(page, "t2").wait_for(timeout=WAIT_MS)
        assert node(page, "t1").get_attribute("data-status") == "succeeded"
        assert node(page, "t2").get_attribute("data-status") == "succeeded"
        assert page.locator('[data-field="request"]').inner_text() == f"check {INJECTION}"
        assert page.locator("#timeline rect").count() >= 3  # plan, t1, t2, synthesis calls
        node(page, "t1").click()
        output = page.locator('[data-field="output"]')
        output.wait_for(timeout=WAIT_MS)
        assert INJECTION in output.inner_text()  # shown as text, whole
        assert page.locator("main script, main img").count() == 0
        assert page.locator("main b", has_text="bold?").count() == 0
        assert page.evaluate("window.__pwned") is None


def test_a_live_run_updates_the_page(tmp_path, page) -> None:
    runs = Runs(
        tmp_path,
        {
            "plan": plan(("t1", "researcher", []), ("t2", "writer", ["t1"])),
            "latency": {"do t1": 6},  # long enough to see it running on a busy machine
        },
    )
    with dashboard(runs.db) as base:
        child = runs.start("run", "a slow one")
        page.goto(base)
        page.locator("#runs tbody tr").first.wait_for(timeout=WAIT_MS)
        page.locator("#runs tbody tr").first.click()
        node(page, "t1").wait_for(timeout=WAIT_MS)
        page.evaluate("window.__same_page = true")
        page.wait_for_selector('#plan-graph [data-task="t1"][data-status="running"]')
        page.wait_for_selector(
            '#plan-graph [data-task="t2"][data-status="succeeded"]', timeout=WAIT_MS
        )
        page.wait_for_selector('#run-status [data-status="succeeded"]', timeout=WAIT_MS)
        assert page.evaluate("window.__same_page") is True  # updated live, never reloaded
        assert child.wait(timeout=60) == 0


def test_approve_from_the_browser_then_the_run_continues(tmp_path, page) -> None:
    runs = Runs(
        tmp_path,
        {"plan": plan(("t1", "researcher", []), ("t2", "deployer", ["t1"]))},
    )
    first = runs.run("run", *runs.team_args(), "ship it")
    assert first.returncode == 5, first.stderr  # waiting for approval
    with dashboard(runs.db) as base:
        run_id = api(base, "/api/runs")["runs"][0]["run_id"]
        page.goto(base + "#/approvals")
        card = page.locator('[data-approval$="/t2"]')
        card.wait_for(timeout=WAIT_MS)
        assert '"do t2"' in card.locator('[data-field="inputs"]').inner_text()
        approve = card.locator('button[data-action="approve"]')
        assert approve.is_disabled()  # high risk: the task id must be typed first
        card.get_by_label("confirm").fill("t2")
        card.get_by_label("note").fill("looks fine")
        approve.click()
        page.wait_for_selector("#flash:has-text('approved')", timeout=WAIT_MS)
        assert f"foreman resume {run_id}" in page.locator("#flash").inner_text()
        approval = api(base, "/api/approvals?all=true")["approvals"][0]
        assert (approval["status"], approval["note"]) == ("approved", "looks fine")

        page.goto(f"{base}#/run/{run_id}")
        page.wait_for_selector('#plan-graph [data-task="t2"][data-status="waiting"]')
        resumed = runs.run("resume", run_id)
        assert resumed.returncode == 0, resumed.stderr
        page.wait_for_selector(
            '#plan-graph [data-task="t2"][data-status="succeeded"]', timeout=WAIT_MS
        )
        page.wait_for_selector('#run-status [data-status="succeeded"]', timeout=WAIT_MS)


def test_the_token_gates_the_page(tmp_path, page) -> None:
    runs = Runs(tmp_path, {"plan": plan(("t1", "researcher", []))})
    assert runs.run("run", "tiny").returncode == 0
    token = "a-long-enough-secret-token"
    with dashboard(runs.db, token=token) as base:
        refused = page.goto(base)
        assert refused is not None and refused.status == 401
        page.goto(f"{base}?token={token}")
        page.locator("#runs tbody tr").first.wait_for(timeout=WAIT_MS)
        assert "token" not in page.url  # the token left the address bar
        page.wait_for_selector("#live.on", timeout=WAIT_MS)  # the event stream got in too


def test_find_the_most_expensive_worker(tmp_path, page, monkeypatch) -> None:
    monkeypatch.setenv("FOREMAN_PRICES", '{"scripted": [3, 15]}')  # $ per million tokens
    runs = Runs(
        tmp_path,
        {
            "plan": plan(("t1", "researcher", []), ("t2", "writer", ["t1"])),
            "outputs": {"do t2": "a long draft " * 400},
        },
    )
    assert runs.run("run", "write it long").returncode == 0
    with dashboard(runs.db) as base:
        page.goto(base + "#/stats")
        page.wait_for_selector("#stats")
        assert page.locator("#most-expensive").inner_text() == "most expensive worker writer"
        chart = page.locator('svg[data-chart="Cost by worker"]')
        assert "writer" in (chart.text_content() or "")
        assert api(base, "/api/stats")["most_expensive_worker"] == "writer"


def test_nested_runs_expand_in_place(tmp_path, page) -> None:
    async def make() -> str:
        store = SQLiteStore(tmp_path / "nested.db")
        model = ScriptedModel(Script(plan_of(task("c1", "checker"), task("c2", "publisher"))))
        child = Orchestrator([worker("checker"), worker("publisher")], model=model)
        review = TeamWorker(name="review", description="Reviews and publishes.", team=child)
        top = Orchestrator([worker("researcher"), review], model=model, store=store)
        try:
            plan = plan_of(task("t1", "researcher"), task("t2", "review", "t1"))
            return (await top.run("Write and publish", plan=plan)).run_id
        finally:
            await store.aclose()

    with ThreadPoolExecutor(1) as thread:  # Playwright's loop runs on this thread
        run_id = thread.submit(asyncio.run, make()).result()
    with dashboard(tmp_path / "nested.db") as base:
        page.goto(f"{base}#/run/{run_id}")
        nested = page.locator(f'[data-nested="{run_id}.t2"]')
        nested.wait_for(timeout=WAIT_MS)
        nested.locator(".toggle").click()
        inner = nested.locator('#plan-graph [data-task="c2"][data-status="succeeded"]')
        inner.wait_for(timeout=WAIT_MS)
        assert nested.locator("#timeline rect").count() >= 3  # drawn with the graph


def test_tool_calls_on_the_timeline_in_the_task_and_approved_from_the_page(tmp_path, page) -> None:
    @tool
    def fetch(url: str) -> str:
        """Fetch a page."""
        return INJECTION

    @tool(risk="high")
    def send_email(to: str) -> str:
        """Send an email."""
        return "sent"

    registry = Registry(
        [worker("calc", tools=("fetch", "send_email"))], tools=Toolbox([fetch, send_email])
    )
    turns = [[ToolCall(id="", name="fetch", arguments={"url": INJECTION})]]
    turns += [[ToolCall(id="", name="send_email", arguments={"to": "a@b.c"})], "done"]

    def answer(request):
        return turns[sum(message.role == "assistant" for message in request.messages)]

    async def make() -> str:
        store = SQLiteStore(tmp_path / "tools.db")
        model = ScriptedModel(Script(plan_of(task("t1", "calc")), tasks={"do t1": answer}))
        orchestrator = Orchestrator(registry, model=model, store=store, assembly="concat")
        try:
            return (await orchestrator.run("mail it", plan=plan_of(task("t1", "calc")))).run_id
        finally:
            await store.aclose()

    with ThreadPoolExecutor(1) as thread:  # Playwright's loop runs on this thread
        run_id = thread.submit(asyncio.run, make()).result()
    with dashboard(tmp_path / "tools.db") as base:
        page.goto(f"{base}#/run/{run_id}")
        page.wait_for_selector('#timeline rect.tool[data-span="t1#1"]')
        page.goto(f"{base}#/run/{run_id}/task/t1")
        fetched = page.locator('[data-tool-call="t1#1"]')
        fetched.wait_for(timeout=WAIT_MS)
        assert INJECTION in fetched.locator('[data-field="tool-result"]').inner_text()
        assert INJECTION in fetched.locator('[data-field="arguments"]').inner_text()
        assert page.locator("main script, main img").count() == 0
        assert page.evaluate("window.__pwned") is None

        page.goto(f"{base}#/approvals")
        card = page.locator('[data-approval$="/t1#2"]')
        card.wait_for(timeout=WAIT_MS)
        assert "send_email" in card.inner_text()
        assert '"to": "a@b.c"' in card.locator('[data-field="inputs"]').inner_text()
        card.get_by_label("confirm").fill("t1#2")
        card.locator('button[data-action="approve"]').click()
        page.wait_for_selector("#flash:has-text('approved')", timeout=WAIT_MS)
        [decided] = api(base, "/api/approvals?all=true")["approvals"]
        assert (decided["task_id"], decided["status"]) == ("t1#2", "approved")
