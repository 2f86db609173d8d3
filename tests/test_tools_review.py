"""Adversarial checks of the tool loop: approvals that must not cover another call,
and resumed loops whose calls must not take another call's stored result."""

from __future__ import annotations

import asyncio
import os
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from foreman import Orchestrator
from foreman.cli import app
from foreman.errors import ConfigError, ModelError, ToolError
from foreman.models.base import ModelRequest, ToolCall
from foreman.results import RunStatus
from foreman.store import MemoryStore
from foreman.testing import ScriptedModel
from foreman.tools import Toolbox, ToolContext, tool
from foreman.tools.builtin import builtin_tool
from foreman.tools.mcp import MCPSource
from foreman.workers import Registry, load_team
from helpers import Script, plan_of, task, worker
from processes import outlives

runner = CliRunner()
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


BROKEN_MODULES = {
    "syntax": "def f(x: int) -> str\n    return 'x'\n",
    "raising": "raise RuntimeError('boom at import')\n",
    "tools_ok": (
        "def g(x: int) -> str:\n    '''G.'''\n    return 'x'\n\n\n"
        "def h(x: 'NoSuchType') -> str:\n    '''H.'''\n    return ''\n"
    ),
}


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("syntax:f", "cannot import 'syntax': SyntaxError"),
        ("raising:f", "cannot import 'raising': RuntimeError: boom at import"),
        ("tools_ok:h", "its signature is not a schema: name 'NoSuchType' is not defined"),
        ("{function: 'tools_ok:g', name: 123}", "'name' must be text"),
        ("{function: 'tools_ok:g', name: 'read file'}", "a tool's name is letters, digits"),
        ("{function: 'tools_ok:g', idempotent: maybe}", "'idempotent' must be true or false"),
        ("{function: 'tools_ok:g', description: [1]}", "'description' must be text"),
    ],
)
def test_a_python_tool_entry_that_cannot_load_is_one_clear_line(
    tmp_path: Path, entry: str, why: str
) -> None:
    for module, text in BROKEN_MODULES.items():
        (tmp_path / f"{module}.py").write_text(text)
    team = tmp_path / "team.yaml"
    team.write_text(
        f"tools: {{python: [{entry}]}}\nworkers: [{{name: a, description: d, system_prompt: s}}]\n"
    )
    with pytest.raises(ConfigError, match=r"Team file .*tools\.python #1") as caught:
        load_team(team)
    assert why in str(caught.value) and "\n" not in str(caught.value)
    result = runner.invoke(app, ["workers", "--team", str(team)])
    assert result.exit_code == 1 and why in " ".join(result.output.split())
    assert "Traceback" not in result.output


async def test_shell_keeps_a_bounded_part_of_a_huge_output(tmp_path: Path) -> None:
    """Output is read as it comes and only its head and tail are kept: a command that
    prints 40 MB does not hold 40 MB in the orchestrator's memory."""
    shell = builtin_tool("shell", {"root": str(tmp_path), "max_output": 100})
    context = ToolContext(run_id="r", task_id="t", worker="w", call_id="c", idempotency_key="k")
    command = "printf start; yes x | head -c 40000000 | tr -d '\\n'; printf end"
    tracemalloc.start()
    try:
        result = await shell.call({"command": command}, context)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 10_000_000
    stdout = result.splitlines()[2:5]
    assert stdout[0].startswith("startxxx") and stdout[2].endswith("xxxend")
    assert "bytes cut" in stdout[1]


async def test_an_mcp_server_that_hangs_at_start_fails_the_task_and_is_stopped(
    tmp_path: Path,
) -> None:
    """A server that never answers: the task fails saying so in one line, the run ends in
    a terminal state, and the server's process is gone (cancelled at once, no grace wait
    for a session that never came up)."""
    pid_file = tmp_path / "server.pid"
    hang = MCPSource(
        "hang",
        command="sh",
        args=["-c", f"echo $$ > {pid_file}; exec sleep 60"],
        startup_timeout=0.5,
    )
    registry = Registry([worker("calc", tools=("hang_*",))], tools=Toolbox(sources=[hang]))
    store = MemoryStore()

    result = await orchestrate(registry, "unused", store)

    assert result.status in (RunStatus.partial, RunStatus.failed, RunStatus.aborted)
    error = result.tasks["t1"].error or ""
    assert "MCP server 'hang' did not start and list its tools within 0.5 s" in error
    assert "\n" not in error
    assert not await outlives(int(pid_file.read_text()))


async def test_read_file_refuses_a_huge_file_and_a_fifo_instead_of_reading_them(
    tmp_path: Path,
) -> None:
    """read_file (low risk: no person asked) read a file whole before cutting it, so a
    model could have a multi-gigabyte file under the root read into memory; a FIFO
    blocked its thread for good."""
    with (tmp_path / "huge.log").open("wb") as huge:
        huge.truncate(200_000_000)  # sparse: no disk used
    os.mkfifo(tmp_path / "pipe")
    read = builtin_tool("read_file", {"root": str(tmp_path)})
    context = ToolContext(run_id="r", task_id="t", worker="w", call_id="c", idempotency_key="k")

    with pytest.raises(ToolError, match=r"'huge.log' is 200000000 bytes; read_file reads"):
        await read.call({"path": "huge.log"}, context)
    with pytest.raises(ToolError, match="'pipe' is not a regular file"):
        await read.call({"path": "pipe"}, context)
