"""The tool contract: Python functions as tools, and the toolbox's allow-lists."""

from __future__ import annotations

import asyncio
import threading
from typing import Annotated

import pytest
from pydantic import BaseModel, Field

from foreman import Registry, Worker
from foreman.errors import ConfigError, ToolError
from foreman.tools import RiskLevel, Tool, Toolbox, ToolContext, ToolSource, tool

CONTEXT = ToolContext(run_id="r", task_id="t", worker="w", call_id="c1", idempotency_key="k1")


@tool(risk="high")
def send_email(to: str, subject: str, body: Annotated[str, Field(description="Text.")] = "") -> str:
    """Send an email to one recipient."""
    return f"sent to {to}: {subject}"


class Query(BaseModel):
    query: str
    limit: int = 2


@tool(idempotent=True)
async def search(q: Query, context: ToolContext) -> list[str]:
    """Search the index."""
    return [f"{q.query}-{n}" for n in range(q.limit)] + [context.idempotency_key]


def test_signature_docstring_and_risk_make_the_spec():
    spec = send_email.spec()
    assert spec.name == "send_email"
    assert spec.description == "Send an email to one recipient."
    assert spec.parameters["required"] == ["to", "subject"]
    assert spec.parameters["properties"]["body"]["description"] == "Text."
    assert spec.parameters["additionalProperties"] is False
    assert send_email.risk is RiskLevel.high and not send_email.idempotent


def test_a_single_pydantic_parameter_takes_the_models_fields_and_context_is_injected():
    assert set(search.parameters["properties"]) == {"query", "limit"}
    assert "context" not in search.parameters["properties"]
    assert search.idempotent
    out = asyncio.run(search.call({"query": "x", "limit": 1}, CONTEXT))
    assert out == '["x-0", "k1"]'


def test_wrong_arguments_are_a_tool_error_the_model_can_read():
    with pytest.raises(ToolError, match="subject: Field required"):
        asyncio.run(send_email.call({"to": "a@b.c"}, CONTEXT))
    with pytest.raises(ToolError, match="cc: Extra inputs"):
        asyncio.run(send_email.call({"to": "a", "subject": "s", "cc": "x"}, CONTEXT))


def test_a_result_that_breaks_its_annotation_is_a_tool_error():
    @tool
    def count() -> int:
        """Count."""
        return "many"  # type: ignore[return-value]

    with pytest.raises(ToolError, match="bad result"):
        asyncio.run(count.call({}, CONTEXT))


def test_sync_tools_run_off_the_event_loop():
    loop_thread = []

    @tool
    def where() -> str:
        """Where it runs."""
        return threading.current_thread().name

    async def main() -> str:
        loop_thread.append(threading.current_thread().name)
        return await where.call({}, CONTEXT)

    assert asyncio.run(main()) != loop_thread[0]


def test_bad_risk_and_var_args_are_config_errors():
    with pytest.raises(ConfigError, match="risk must be"):
        tool(risk="extreme")(lambda: "x")
    with pytest.raises(ConfigError, match=r"\*args"):
        tool(lambda *items: "x")


class _Source(ToolSource):
    name = "fake"

    def __init__(self, tools: list[Tool]) -> None:
        self.tools, self.opened, self.closed = tools, 0, 0

    async def open(self) -> list[Tool]:
        self.opened += 1
        return self.tools

    async def aclose(self) -> None:
        self.closed += 1


def test_the_allow_list_picks_names_and_patterns_from_direct_and_source_tools():
    @tool
    def files_read(path: str) -> str:
        """Read."""
        return path

    source = _Source([files_read])
    box = Toolbox([send_email, search], sources=[source])
    assert box.allowed(["files_*"]) == []  # not opened yet
    asyncio.run(box.open())
    asyncio.run(box.open())
    assert source.opened == 2  # asked each run (open is idempotent): a dead server restarts
    assert [t.name for t in box.allowed(["files_*", "search"])] == ["search", "files_read"]
    assert box.allowed([]) == []
    assert "delete_files" not in box
    asyncio.run(box.aclose())
    assert source.closed == 1


def test_a_source_tool_cannot_shadow_another_tool():
    box = Toolbox([send_email], sources=[_Source([send_email])])
    with pytest.raises(ConfigError, match="already has"):
        asyncio.run(box.open())


def test_workers_name_their_tools_and_the_registry_holds_the_toolbox():
    worker = Worker(name="researcher", description="d", system_prompt="s", tools=("search",))
    registry = Registry([worker], tools=Toolbox([search]))
    assert registry.get("researcher").tools == ("search",)
    assert [t.name for t in registry.tools.allowed(worker.tools)] == ["search"]
    with pytest.raises(ValueError, match="tolos"):
        Worker(name="x", description="d", system_prompt="s", tolos=("search",))


@pytest.mark.parametrize("name", ["_secret", "model_config", "model_dump"])
def test_a_parameter_pydantic_cannot_take_is_one_clear_error(name: str) -> None:
    """``_secret`` would be dropped from the schema (every call then refused), and
    ``model_dump`` raised a bare ValueError; ``model_name`` is an argument like any."""
    namespace: dict = {}
    exec(f"def look({name}: str) -> str:\n    '''Look.'''\n    return {name}", namespace)
    with pytest.raises(ConfigError, match=f"cannot be named '{name}'"):
        tool(namespace["look"])

    @tool
    def pick(model_name: str) -> str:
        """Pick a model."""
        return model_name

    assert list(pick.parameters["properties"]) == ["model_name"]
