"""A worker with tools, through the public Orchestrator on the scripted model: the loop,
its events, the allow-list, tool errors, parallel calls and the turn limit."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from foreman import Budget, Orchestrator
from foreman.events import EVENT_ADAPTER, ToolCalled, ToolFinished
from foreman.models.base import ModelRequest, ToolCall
from foreman.results import RunStatus, TaskStatus
from foreman.store import MemoryStore
from foreman.testing import ScriptedModel
from foreman.tools import Tool, Toolbox, ToolContext, ToolError, tool
from foreman.workers import Registry
from helpers import Script, of_type, plan_of, task, worker, worker_requests

PLAN = plan_of(task("t1", "calc"))


def turns(*answers: Any):
    """A task answer that gives ``answers[n]`` on the loop's turn n (0-based)."""

    def answer(request: ModelRequest) -> Any:
        chosen = answers[sum(message.role == "assistant" for message in request.messages)]
        return chosen(request) if callable(chosen) else chosen

    return answer


def call(tool_name: str, /, **arguments: Any) -> ToolCall:
    return ToolCall(id="", name=tool_name, arguments=arguments)


async def run(registry: Registry, answer: Any, **kwargs: Any) -> tuple[Any, list, ScriptedModel]:
    model = ScriptedModel(Script(PLAN, tasks={"do t1": answer}))
    events: list[Any] = []
    kwargs.setdefault("store", MemoryStore())
    orchestrator = Orchestrator(registry, model=model, assembly="concat", **kwargs)
    async with asyncio.timeout(10):
        result = await orchestrator.run("x", plan=PLAN, on_event=events.append)
    return result, events, model


def team(*tools: Any, allow: tuple[str, ...], **fields: Any) -> Registry:
    return Registry([worker("calc", tools=allow, **fields)], tools=Toolbox(tools))


async def test_the_model_calls_a_tool_and_answers_from_its_result() -> None:
    seen: list[ToolContext] = []

    @tool
    def add(a: int, b: int, context: ToolContext) -> int:
        """Add two numbers."""
        seen.append(context)
        return a + b

    result, events, model = await run(
        team(add, allow=("add",)),
        turns([call("add", a=2, b=3)], lambda r: "sum " + r.messages[-1].tool_results[0].content),
    )

    assert result.status is RunStatus.succeeded
    assert result.tasks["t1"].output == "sum 5"
    first, second = worker_requests(model)
    assert [spec.name for spec in first.tools] == ["add"]
    assert first.tool_choice == "auto"
    assert second.messages[-1].tool_results[0].is_error is False
    assert [c.task_id for c in seen] == ["t1"]
    assert seen[0].idempotency_key == f"{result.run_id}:t1:1"
    called, finished = of_type(events, ToolCalled), of_type(events, ToolFinished)
    assert [(e.tool, e.arguments, e.key) for e in called] == [("add", {"a": 2, "b": 3}, "t1#1")]
    assert [(e.tool, e.outcome.value, e.result) for e in finished] == [("add", "ok", "5")]
    assert events.index(called[0]) < events.index(finished[0])
    for event in called + finished:
        assert EVENT_ADAPTER.validate_json(event.model_dump_json()) == event


async def test_a_tool_outside_the_allow_list_is_refused_and_never_runs() -> None:
    ran: list[str] = []

    @tool
    def read() -> str:
        """Read."""
        ran.append("read")
        return "text"

    @tool
    def delete_files() -> str:
        """Delete."""
        ran.append("delete_files")
        return "deleted"

    result, events, model = await run(
        team(read, delete_files, allow=("read",)),
        turns([call("delete_files"), call("nonexistent"), call("read")], "done"),
    )

    assert result.status is RunStatus.succeeded
    assert ran == ["read"]
    assert [spec.name for spec in worker_requests(model)[0].tools] == ["read"]
    results = worker_requests(model)[1].messages[-1].tool_results
    assert [r.is_error for r in results] == [True, True, False]
    assert "not allowed" in results[0].content
    outcomes = [(e.tool, e.outcome.value) for e in of_type(events, ToolFinished)]
    assert outcomes == [("delete_files", "refused"), ("nonexistent", "refused"), ("read", "ok")]


async def test_tool_failures_go_back_to_the_model_as_errors() -> None:
    @tool
    def strict(n: int) -> str:
        """Fails on purpose."""
        if n == 1:
            raise ToolError("n must not be 1")
        raise RuntimeError("boom")

    result, events, model = await run(
        team(strict, allow=("strict",)),
        turns([call("strict", n=1), call("strict", n=2), call("strict", n="x")], "coped"),
    )

    assert result.tasks["t1"].output == "coped"
    results = worker_requests(model)[1].messages[-1].tool_results
    assert [r.is_error for r in results] == [True, True, True]
    assert results[0].content == "n must not be 1"
    assert results[1].content == "RuntimeError: boom"
    assert "invalid arguments" in results[2].content
    assert {e.outcome.value for e in of_type(events, ToolFinished)} == {"error"}


async def test_a_tool_that_runs_too_long_times_out_as_an_error() -> None:
    @tool
    async def slow() -> str:
        """Never ends."""
        await asyncio.Event().wait()
        return "never"

    slow.timeout = 0.05
    result, _, model = await run(team(slow, allow=("slow",)), turns([call("slow")], "ok"))

    assert result.status is RunStatus.succeeded
    timed_out = worker_requests(model)[1].messages[-1].tool_results[0]
    assert timed_out.is_error and "within 0.05s" in timed_out.content
    # its thread may go on: the model is warned before it repeats a side effect
    assert "may still complete" in timed_out.content


STUCK_TOOL_SCRIPT = """
import asyncio, sys, threading, time
sys.path.insert(0, sys.argv[1])
from test_tools_loop import PLAN, call, run, team, turns
from foreman.tools import tool

@tool
def stuck() -> str:
    \"\"\"Never ends.\"\"\"
    threading.Event().wait()
    return "never"

stuck.timeout = 0.1
result, _, _ = asyncio.run(run(team(stuck, allow=("stuck",)), turns([call("stuck")], "ok")))
print("RESULT", result.status.value, flush=True)
"""


def test_a_sync_tool_stuck_after_its_timeout_does_not_keep_the_process_alive(tmp_path) -> None:
    """The run ends, and so does the process: a thread left running a timed-out function
    must not hold the interpreter's exit (as an executor's worker thread does)."""
    tests = str(Path(__file__).parent)
    done = subprocess.run(
        [sys.executable, "-c", STUCK_TOOL_SCRIPT, tests],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([tests, *sys.path])},
    )
    assert done.returncode == 0, done.stderr
    assert "RESULT succeeded" in done.stdout


async def test_an_idempotent_tool_that_times_out_carries_no_warning() -> None:
    @tool(idempotent=True)
    async def slow() -> str:
        """Never ends."""
        await asyncio.Event().wait()
        return "never"

    slow.timeout = 0.05
    _, _, model = await run(team(slow, allow=("slow",)), turns([call("slow")], "ok"))

    timed_out = worker_requests(model)[1].messages[-1].tool_results[0]
    assert timed_out.content == "the tool slow gave no result within 0.05s"


async def test_calls_of_one_turn_run_concurrently() -> None:
    both = asyncio.Barrier(2)

    @tool
    async def meet(name: str) -> str:
        """Waits for the other call: only concurrent calls both return."""
        await both.wait()
        return name

    result, _, _ = await run(
        team(meet, allow=("me*",)),
        turns([call("meet", name="a"), call("meet", name="b")], "met"),
    )

    assert result.tasks["t1"].output == "met"


async def test_the_last_turn_must_answer() -> None:
    @tool
    def again() -> str:
        """Always more."""
        return "more"

    result, events, model = await run(
        team(again, allow=("again",), max_tool_turns=3),
        turns([call("again")], [call("again")], "forced answer"),
    )

    requests = worker_requests(model)
    assert [r.tool_choice for r in requests] == ["auto", "auto", "none"]
    assert result.tasks["t1"].output == "forced answer"
    assert len(of_type(events, ToolCalled)) == 2


@pytest.mark.parametrize("verdict", [True, False])
async def test_a_high_risk_tool_asks_the_approver_with_its_exact_arguments(verdict: bool) -> None:
    sent: list[str] = []
    asked: list[Any] = []

    @tool(risk="high")
    def send_email(to: str, body: str) -> str:
        """Send an email."""
        sent.append(to)
        return "sent"

    def approve(approval: Any) -> bool:
        asked.append(approval)
        return verdict

    result, _, model = await run(
        team(send_email, allow=("send_email",)),
        turns([call("send_email", to="a@b.c", body="hi")], "done"),
        approve=approve,
    )

    assert result.status is RunStatus.succeeded
    assert [(a.task_id, a.tool, a.arguments) for a in asked] == [
        ("t1#1", "send_email", {"to": "a@b.c", "body": "hi"})
    ]
    assert sent == (["a@b.c"] if verdict else [])
    answer = worker_requests(model)[1].messages[-1].tool_results[0]
    assert answer.is_error is (not verdict)
    if not verdict:
        assert answer.content.startswith("rejected by the approver")


async def test_without_an_approver_a_high_risk_call_pauses_the_run_until_approved() -> None:
    sent: list[str] = []

    @tool(risk="high")
    def send_email(to: str) -> str:
        """Send an email."""
        sent.append(to)
        return "sent"

    store = MemoryStore()
    registry = team(send_email, allow=("send_email",))
    answer = turns([call("send_email", to="a@b.c")], "done")
    result, _, _ = await run(registry, answer, store=store)

    assert result.status is RunStatus.waiting_approval
    assert result.tasks["t1"].status is TaskStatus.waiting
    assert sent == []
    pending = await store.list_approvals()
    assert [(a.task_id, a.tool, a.arguments) for a in pending] == [
        ("t1#1", "send_email", {"to": "a@b.c"})
    ]

    await store.decide(result.run_id, "t1#1", approved=True, note=None)
    model = ScriptedModel(Script(PLAN, tasks={"do t1": answer}))
    orchestrator = Orchestrator(registry, model=model, store=store, assembly="concat")
    resumed = await orchestrator.resume(result.run_id)

    assert resumed.status is RunStatus.succeeded
    assert sent == ["a@b.c"]
    assert len(worker_requests(model)) == 1  # the stored first turn was not asked again
    calls = await store.list_tool_calls(run_id=result.run_id)
    assert [(c.tool, c.outcome.value, c.task_id) for c in calls] == [("send_email", "ok", "t1")]


async def test_the_runs_budget_holds_every_turn_of_the_loop() -> None:
    ran: list[int] = []

    @tool
    def step(n: int) -> str:
        """One step."""
        ran.append(n)
        return "next"

    result, _, model = await run(
        team(step, allow=("step",)),
        turns([call("step", n=1)], [call("step", n=2)], [call("step", n=3)], "done"),
        budget=Budget(max_calls=2),
    )

    assert result.status is RunStatus.over_budget
    assert len(worker_requests(model)) == 2  # the third turn was never asked
    assert ran == [1, 2]


async def test_medium_risk_tools_run_unasked_when_medium_is_auto_approved() -> None:
    asked: list[Any] = []

    @tool(risk="medium")
    def rename(name: str) -> str:
        """Rename."""
        return f"renamed {name}"

    result, _, _ = await run(
        team(rename, allow=("rename",)),
        turns([call("rename", name="x")], "done"),
        approve=lambda approval: asked.append(approval) or True,
        auto_approve="medium",
    )

    assert result.status is RunStatus.succeeded and asked == []


async def test_an_approval_covers_only_the_arguments_it_showed() -> None:
    asked: list[dict] = []

    @tool(risk="high")
    def pay(amount: int) -> str:
        """Pay."""
        return f"paid {amount}"

    result, _, _ = await run(
        team(pay, allow=("pay",)),
        turns([call("pay", amount=5)], [call("pay", amount=500)], "done"),
        approve=lambda approval: (
            asked.append(approval.arguments) or approval.arguments == {"amount": 5}
        ),
    )

    assert result.status is RunStatus.succeeded
    assert asked == [{"amount": 5}, {"amount": 500}]  # each call asked on its own


async def test_a_structured_worker_answers_in_its_schema_after_its_tool_calls() -> None:
    class Total(BaseModel):
        total: int

    @tool
    def price(item: str) -> int:
        """The price of an item."""
        return {"tea": 3, "cake": 4}[item]

    result, _, model = await run(
        team(price, allow=("price",), output_schema=Total),
        turns([call("price", item="tea"), call("price", item="cake")], '{"total": 7}'),
    )

    assert result.tasks["t1"].output == Total(total=7)
    assert all(request.output_schema for request in worker_requests(model))


async def test_a_revision_is_a_new_loop_numbering_its_calls_on() -> None:
    @tool
    def draft(text: str) -> str:
        """Keep a draft."""
        return "kept"

    store = MemoryStore()
    registry = Registry(
        [worker("calc", tools=("draft",)), worker("reviewer")], tools=Toolbox([draft])
    )
    model = ScriptedModel(
        Script(
            PLAN,
            tasks={"do t1": turns([call("draft", text="v")], "version")},
            review=[
                '{"approved": false, "reasons": ["more"]}',
                '{"approved": true, "reasons": []}',
            ],
        )
    )
    orchestrator = Orchestrator(
        registry, model=model, store=store, validator="reviewer", assembly="concat"
    )
    result = await orchestrator.run("x", plan=PLAN)

    assert result.tasks["t1"].revisions == 1
    calls = await store.list_tool_calls(run_id=result.run_id)
    assert [(c.key, c.loop) for c in calls] == [("t1#1", 0), ("t1#2", 1)]
    turns_stored = await store.list_tool_turns(result.run_id, "t1")
    assert [(t.loop, t.turn) for t in turns_stored] == [(0, 1), (0, 2), (1, 1), (1, 2)]


async def test_a_delegated_worker_runs_its_tool_loop_in_delegate_mode() -> None:
    looked: list[str] = []

    @tool
    def lookup(term: str) -> str:
        """Look up."""
        looked.append(term)
        return "found"

    def answer(request: ModelRequest) -> Any:
        names = {spec.name for spec in request.tools}
        turn = sum(message.role == "assistant" for message in request.messages)
        if "lookup" in names:  # the worker's own loop
            return [call("lookup", term="dns")] if turn == 0 else "dns is found"
        if turn == 0:  # the orchestrator delegates to the worker, then answers
            return [ToolCall(id="", name="calc", arguments={"instructions": "look dns up"})]
        return "DONE"

    model = ScriptedModel(answer)
    orchestrator = Orchestrator(team(lookup, allow=("lookup",)), model=model, mode="delegate")
    result = await orchestrator.run("x")

    assert result.status is RunStatus.succeeded and result.answer == "DONE"
    assert looked == ["dns"]


async def test_a_tool_written_as_a_class_works_like_a_function_tool() -> None:
    seen: list[str] = []

    class Clock(Tool):
        name = "clock"
        description = "The time."
        parameters = {"type": "object", "properties": {"zone": {"type": "string"}}}

        async def call(self, arguments: dict[str, Any], context: ToolContext) -> str:
            seen.append(context.idempotency_key)
            return {"zone": arguments["zone"], "time": "12:00"}  # type: ignore[return-value]

    result, _, model = await run(
        team(Clock(), allow=("clock",)), turns([call("clock", zone="UTC")], "noon")
    )

    assert result.tasks["t1"].output == "noon"
    assert worker_requests(model)[1].messages[-1].tool_results[0].content == (
        '{"zone": "UTC", "time": "12:00"}'
    )
    assert seen == [f"{result.run_id}:t1:1"]


async def test_an_allow_list_that_matches_no_tool_is_logged_and_the_call_is_plain(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @tool
    def search(q: str) -> str:
        """Search."""
        return "found"

    with caplog.at_level("WARNING", logger="foreman.engine.tooling"):
        result, _, model = await run(team(search, allow=("serach",)), "plain answer")

    assert result.tasks["t1"].output == "plain answer"
    assert [request.tools for request in worker_requests(model)] == [[]]
    (warning,) = [r.getMessage() for r in caplog.records if "serach" in r.getMessage()]
    assert "which no tool matches (known: search)" in warning


async def test_a_loop_without_an_approval_gate_never_runs_a_risky_call() -> None:
    from foreman.engine.tooling import ToolLoop

    ran: list[str] = []

    @tool(risk="medium")
    def move(path: str) -> str:
        """Move a file."""
        ran.append(path)
        return "moved"

    events: list[Any] = []
    model = ScriptedModel(turns([call("move", path="a")], "ok"))
    loop = ToolLoop(
        run_id="r", task_id="t1", worker=worker("w", tools=("move",)), tools=[move],
        models=[model], emit=events.append,
    )  # fmt: skip

    outcome = await loop.run("system", "user")

    assert outcome.output == "ok" and ran == []
    (finished,) = of_type(events, ToolFinished)
    assert finished.outcome.value == "rejected" and "no approver" in finished.result
