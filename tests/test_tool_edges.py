"""A tool's odd endings are results the model reads, never the end of the run: text that
is not valid UTF-8, a ``SystemExit`` (a CLI parser inside a tool), a ``TimeoutError`` the
tool raised itself (not its time limit)."""

from __future__ import annotations

import argparse

from foreman import Orchestrator
from foreman.models.base import ToolCall
from foreman.store import SQLiteStore
from foreman.testing import ScriptedModel
from foreman.tools import Toolbox, tool
from foreman.workers import Registry
from helpers import Script, plan_of, task, worker

PLAN = plan_of(task("t1", "calc"))


@tool
def odd_name() -> str:
    """A file name Python could not decode."""
    return "bad\udcffname.txt"


@tool
def mini_cli(argv: list[str]) -> str:
    """A little command line."""
    parser = argparse.ArgumentParser(prog="mini")
    parser.add_argument("--n", type=int, required=True)
    return f"n={parser.parse_args(argv).n}"  # bad arguments: argparse calls sys.exit(2)


@tool
async def flaky() -> str:
    """An upstream that times out on its own."""
    raise TimeoutError("upstream socket timed out")


async def tool_result(tmp_path, name: str, **arguments) -> tuple[str, str]:
    """The task's status and what the model read back from one call of ``name``."""

    def answer(request):
        if not any(message.role == "assistant" for message in request.messages):
            return [ToolCall(id="", name=name, arguments=arguments)]
        return "read: " + request.messages[-1].tool_results[0].content

    model = ScriptedModel(Script(PLAN, tasks={"do t1": answer}))
    tools = Toolbox([odd_name, mini_cli, flaky])
    team = Registry([worker("calc", tools=(name,))], tools=tools)
    store = SQLiteStore(tmp_path / "runs.db")
    try:
        result = await Orchestrator(team, model=model, store=store, assembly="concat").run(
            "x", plan=PLAN
        )
        (stored,) = await store.list_tool_calls(run_id=result.run_id)
        assert stored.result == result.tasks["t1"].output.removeprefix("read: ")
        return result.tasks["t1"].status.value, result.tasks["t1"].output
    finally:
        await store.aclose()


async def test_text_that_is_not_utf8_is_stored_with_replacement_characters(tmp_path) -> None:
    status, output = await tool_result(tmp_path, "odd_name")
    assert status == "succeeded" and output.startswith("read: bad\ufffd")


async def test_a_tool_that_calls_sys_exit_returns_an_error_and_the_process_goes_on(
    tmp_path,
) -> None:
    status, output = await tool_result(tmp_path, "mini_cli", argv=["--n", "x\ud800"])  # stored
    assert (status, output) == ("succeeded", "read: SystemExit: 2")


async def test_a_timeout_error_the_tool_raised_is_its_own_error(tmp_path) -> None:
    status, output = await tool_result(tmp_path, "flaky")
    assert (status, output) == ("succeeded", "read: TimeoutError: upstream socket timed out")


async def test_tool_calls_on_the_last_turn_with_no_answer_are_not_an_empty_success() -> None:
    """A model that ignores ``tool_choice="none"`` on its last turn is asked again; one
    that never answers fails the task, which used to succeed with an empty output."""
    model = ScriptedModel(
        Script(PLAN, tasks={"do t1": [ToolCall(id="", name="odd_name", arguments={})]})
    )
    team = Registry(
        [worker("calc", tools=("odd_name",), max_tool_turns=2)], tools=Toolbox([odd_name])
    )
    result = await Orchestrator(team, model=model, assembly="concat").run("x", plan=PLAN)
    t1 = result.tasks["t1"]
    assert t1.status.value == "failed" and "tool calls on the last turn" in (t1.error or "")
    choices = [request.tool_choice for request in model.requests if request.tools]
    assert choices[:2] == ["auto", "none"] and set(choices[2:]) == {"none"}  # asked again
