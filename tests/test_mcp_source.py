"""MCP servers as tool sources, against a real MCP server the tests start
(tests/mcp_fixture_server.py): over stdio, started by the source itself, and over
streamable HTTP on a free localhost port."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from foreman.errors import ConfigError, ToolError
from foreman.tools import RiskLevel, Toolbox, ToolContext
from foreman.tools.mcp import MCPSource
from processes import outlives, spawn

SERVER = Path(__file__).with_name("mcp_fixture_server.py")


def context(call: str = "c1") -> ToolContext:
    return ToolContext(
        run_id="r1", task_id="t1", worker="w", call_id=call, idempotency_key=f"r1/t1/{call}"
    )


def stdio(**settings) -> MCPSource:
    return MCPSource("fixture", command=sys.executable, args=[str(SERVER)], **settings)


@pytest.fixture
def http_url() -> Iterator[str]:
    child = spawn([sys.executable, str(SERVER), "--http"])
    port = child.readline(timeout=30)
    assert port is not None and port.strip().isdigit(), child.stderr()
    yield f"http://127.0.0.1:{port.strip()}/mcp"
    child.kill()


async def test_a_stdio_servers_tools_are_tools_like_any_other(tmp_path: Path) -> None:
    source = stdio(
        risk="low",
        tool_risk={"refuse": "high"},
        idempotent=["add"],
        prefix="fx_",
        env={"FIXTURE_FLAVOUR": "mint"},
        cwd=str(tmp_path),
    )
    box = Toolbox(sources=[source])
    try:
        await box.open()
        assert sorted(box.names()) == [
            "fx_add",
            "fx_notes_search",  # notes.search, as providers accept names
            "fx_refuse",
            "fx_slow",
            "fx_whoami",
        ]
        search = box.get("fx_notes_search")
        assert await search.call({"query": "llamas"}, context()) == "no notes about llamas"
        add = box.get("fx_add")
        assert add is not None
        assert add.description == "Add two whole numbers."
        assert add.parameters["properties"].keys() == {"a", "b"}
        assert (add.risk, add.idempotent) == (RiskLevel.low, True)
        refuse = box.get("fx_refuse")
        assert refuse is not None and (refuse.risk, refuse.idempotent) == (RiskLevel.high, False)
        assert await add.call({"a": 2, "b": 40}, context()) == "42"
        seen = json.loads(await box.get("fx_whoami").call({"note": "hi"}, context("c7")))
        assert seen["note"] == "hi" and seen["key"] == "r1/t1/c7"
        assert seen["env"] == "mint" and seen["cwd"] == str(tmp_path)
        assert seen["pid"] != os.getpid()  # a real server process, started by the source
    finally:
        await box.aclose()
    assert not await outlives(seen["pid"])  # closing stopped it


async def test_errors_reach_the_model_as_tool_errors() -> None:
    source = stdio(timeout=3)
    tools = {t.name: t for t in await source.open()}
    try:
        with pytest.raises(ToolError, match="refused: the moon is full"):
            await tools["refuse"].call({"reason": "the moon is full"}, context())
        with pytest.raises(ToolError, match=r"slow \(MCP server 'fixture'\) took longer than"):
            await tools["slow"].call({"seconds": 60}, context())
        with pytest.raises(ToolError):  # the server validates the arguments itself
            await tools["add"].call({"a": "two"}, context())
        assert await tools["add"].call({"a": 1, "b": 1}, context()) == "2"  # still serving
    finally:
        await source.aclose()
    with pytest.raises(ToolError, match="MCP server 'fixture' is not connected"):
        await tools["add"].call({"a": 1, "b": 1}, context())


async def test_a_server_that_dies_is_a_tool_error_not_a_hang_and_the_next_open_restarts_it() -> (
    None
):
    source = stdio()
    tools = {t.name: t for t in await source.open()}
    try:
        pid = json.loads(await tools["whoami"].call({"note": "x"}, context()))["pid"]
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(ToolError, match="MCP server 'fixture'"):
            await tools["add"].call({"a": 1, "b": 1}, context())
        await source.open()  # what the toolbox does for the next run: a new server
        assert await tools["add"].call({"a": 1, "b": 1}, context()) == "2"
        assert json.loads(await tools["whoami"].call({"note": "x"}, context()))["pid"] != pid
    finally:
        await source.aclose()


async def test_open_and_close_are_idempotent_and_reopen_works() -> None:
    source = stdio()
    first = await source.open()
    assert await source.open() is first
    await source.aclose()
    await source.aclose()
    again = {t.name: t for t in await source.open()}
    try:
        assert await again["add"].call({"a": 3, "b": 4}, context()) == "7"
    finally:
        await source.aclose()


async def test_open_and_close_from_different_tasks() -> None:
    """The toolbox opens a source from the first worker task that needs it and closes it
    from the orchestrator's: the session's own task makes that safe for anyio."""
    import asyncio

    source = stdio()
    tools = await asyncio.create_task(source.open())
    add = next(t for t in tools if t.name == "add")
    results = await asyncio.gather(
        *(asyncio.create_task(add.call({"a": n, "b": n}, context(f"c{n}"))) for n in range(5))
    )
    assert results == ["0", "2", "4", "6", "8"]
    await asyncio.create_task(source.aclose())


async def test_a_server_that_cannot_start_is_one_clear_error() -> None:
    missing = MCPSource("ghost", command="no-such-mcp-server-x")
    with pytest.raises(ConfigError, match="MCP server 'ghost' could not be reached"):
        await missing.open()
    failing = MCPSource("failing", command=sys.executable, args=[str(SERVER), "--fail"])
    with pytest.raises(ConfigError, match="the fixture server was told to fail"):
        await failing.open()
    nobody = MCPSource("nobody", url="http://127.0.0.1:9/mcp", startup_timeout=10)
    with pytest.raises(ConfigError, match="MCP server 'nobody' could not be reached"):
        await nobody.open()


async def test_tool_risk_must_name_offered_tools() -> None:
    why = r"^MCP server 'fixture': tool_risk names tools the server does not offer: ad\.$"
    with pytest.raises(ConfigError, match=why):
        await stdio(tool_risk={"ad": "high"}).open()


def test_specs_are_checked() -> None:
    for settings, why in [
        ({}, "give either 'command'"),
        ({"command": "x", "url": "http://h/mcp"}, "give either 'command'"),
        ({"url": "http://h/mcp", "args": ["a"]}, "are for a stdio server"),
        ({"command": "x", "headers": {"a": "b"}}, "are for an HTTP server"),
        ({"url": "ftp://h/mcp"}, "must be an http or https URL"),
        ({"command": "x", "risk": "extreme"}, "risk"),
        ({"command": "x", "comand": "y"}, "comand"),
    ]:
        with pytest.raises(ConfigError, match=why):
            MCPSource("s", **settings)


async def test_a_streamable_http_server_by_url(http_url: str) -> None:
    source = MCPSource(
        "remote", url=http_url, headers={"Authorization": "Bearer t0ken"}, risk="high"
    )
    tools = {t.name: t for t in await source.open()}
    try:
        assert tools["add"].risk is RiskLevel.high
        assert await tools["add"].call({"a": 20, "b": 22}, context()) == "42"
        seen = json.loads(await tools["whoami"].call({"note": "over http"}, context("c9")))
        assert seen["auth"] == "Bearer t0ken" and seen["key"] == "r1/t1/c9"
        with pytest.raises(ToolError, match="refused: no"):
            await tools["refuse"].call({"reason": "no"}, context())
    finally:
        await source.aclose()


async def test_a_worker_uses_an_http_servers_tools_through_the_python_api(http_url: str) -> None:
    """Registry(..., tools=Toolbox(sources=[...])): the orchestrator opens the source on the
    worker's first turn and closes it with itself; opened again, the toolbox works again."""
    from foreman import Orchestrator
    from foreman.models.base import ModelRequest, ToolCall
    from foreman.store import MemoryStore
    from foreman.testing import ScriptedModel
    from foreman.workers import Registry
    from helpers import Script, plan_of, task, worker

    def answer(request: ModelRequest):
        results = [r.content for m in request.messages for r in m.tool_results]
        if not results:
            return [ToolCall(id="", name="remote_add", arguments={"a": 1, "b": 2})]
        return f"the server says {results[0]}"

    box = Toolbox(sources=[MCPSource("remote", url=http_url, risk="low", prefix="remote_")])
    registry = Registry([worker("calc", tools=("remote_*",))], tools=box)
    model = ScriptedModel(Script(plan_of(task("t1", "calc")), tasks={"do t1": answer}))
    async with Orchestrator(
        registry, model=model, store=MemoryStore(), assembly="concat"
    ) as orchestrator:
        result = await orchestrator.run("add")
        assert result.tasks["t1"].output == "the server says 3"
        assert "remote_add" in box
    assert "remote_add" not in box  # closed with the orchestrator
    await box.open()
    try:
        assert await box.get("remote_add").call({"a": 5, "b": 5}, context()) == "10"
    finally:
        await box.aclose()
