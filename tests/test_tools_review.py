"""Adversarial checks of the tool loop: approvals that must not cover another call,
and resumed loops whose calls must not take another call's stored result."""

from __future__ import annotations

import asyncio
from typing import Any

from foreman import Orchestrator
from foreman.errors import ModelError
from foreman.models.base import ModelRequest, ToolCall
from foreman.results import RunStatus
from foreman.store import MemoryStore
from foreman.testing import ScriptedModel
from foreman.tools import Toolbox, tool
from foreman.workers import Registry
from helpers import Script, plan_of, task, worker

PLAN = plan_of(task("t1", "calc"))


def call(tool_name: str, /, **arguments: Any) -> ToolCall:
    return ToolCall(id="", name=tool_name, arguments=arguments)


def turns(*answers: Any):
    def answer(request: ModelRequest) -> Any:
        chosen = answers[sum(message.role == "assistant" for message in request.messages)]
        return chosen(request) if callable(chosen) else chosen

    return answer


class JournalLessStore(MemoryStore):
    """A store written before tool journals: resume asks a tool loop's turns again."""

    @property
    def supports_tool_journal(self) -> bool:
        return False


def mailbox() -> tuple[Registry, list[str]]:
    done: list[str] = []

    @tool(risk="high")
    def archive(id: int) -> str:
        """Archive a message."""
        done.append(f"archive {id}")
        return "archived"

    @tool(risk="high")
    def delete(id: int) -> str:
        """Delete a message for good."""
        done.append(f"delete {id}")
        return "deleted"

    registry = Registry(
        [worker("calc", tools=("archive", "delete"))], tools=Toolbox([archive, delete])
    )
    return registry, done


async def orchestrate(registry: Registry, answer: Any, store: MemoryStore, run_id=None):
    model = ScriptedModel(Script(PLAN, tasks={"do t1": answer}))
    orchestrator = Orchestrator(registry, model=model, store=store, assembly="concat")
    async with asyncio.timeout(10):
        if run_id is None:
            return await orchestrator.run("x", plan=PLAN)
        return await orchestrator.resume(run_id)


async def test_an_approval_of_one_tool_never_runs_another_tool_with_the_same_arguments():
    store = JournalLessStore()
    registry, done = mailbox()
    first = await orchestrate(registry, turns([call("archive", id=7)], "done"), store)
    assert first.status is RunStatus.waiting_approval
    await store.decide(first.run_id, "t1#1", approved=True, note="archiving is fine")

    # asked again on resume (no journal), the model now wants the same key's other tool
    again = turns([call("delete", id=7)], "done")
    resumed = await orchestrate(registry, again, store, first.run_id)

    assert done == []  # the approval was for archive: delete waits for its own
    assert resumed.status is RunStatus.waiting_approval
    (pending,) = await store.list_approvals()
    assert (pending.task_id, pending.tool, pending.arguments) == ("t1#1", "delete", {"id": 7})


async def test_a_turn_asked_again_on_resume_never_takes_a_later_loops_stored_result():
    """The worker's model failed on its second turn, so its fallback worker's loop ran a
    call and paused; on resume that second turn is asked again (it was never stored) and
    answers: its new call is a new call, not the fallback loop's stored one."""
    looked_up: list[str] = []

    @tool(risk="high")
    def send(to: str) -> str:
        """Send the answer."""
        return "sent"

    @tool
    def lookup(q: str) -> str:
        """Look a word up."""
        looked_up.append(q)
        return q.upper()

    registry = Registry(
        [
            worker("calc", tools=("lookup",), fallback="backup"),
            worker("backup", tools=("lookup", "send")),
        ],
        tools=Toolbox([lookup, send]),
    )

    def answers(second: Any):
        def answer(request: ModelRequest) -> Any:
            turn = sum(message.role == "assistant" for message in request.messages)
            if "backup" in (request.system or ""):
                return [call("lookup", q="b"), call("send", to="x")][turn]
            return [call("lookup", q="a"), second, "done"][turn]

        return answer

    store = MemoryStore()
    first = await orchestrate(registry, answers(ModelError("provider down")), store)
    assert first.status is RunStatus.waiting_approval
    assert looked_up == ["a", "b"]

    model = ScriptedModel(Script(PLAN, tasks={"do t1": answers(call("lookup", q="c"))}))
    orchestrator = Orchestrator(registry, model=model, store=store, assembly="concat")
    async with asyncio.timeout(10):
        resumed = await orchestrator.resume(first.run_id)

    assert resumed.status is RunStatus.succeeded
    assert looked_up == ["a", "b", "c"]  # the new call ran, with its own arguments
    last = model.requests[-1].messages[-1].tool_results[0]
    assert last.content == "C"
    calls = await store.list_tool_calls(run_id=first.run_id)
    assert len({c.seq for c in calls}) == len(calls)
    assert ("lookup", {"q": "c"}, "C") in [(c.tool, c.arguments, c.result) for c in calls]
